"""A camera the model has never seen: the gate before and after fitting to it (issue 30).

    uv run python benchmarks/new_camera.py [--model data/models/mobilenetv2-a1.0-clinical]

1. The wearer's recording: FIT_FRAMES images of the release model's TRAINING folds (its inner
   validation left out), both domains, seen through training/new_camera.py's simulated camera,
   written as a bag at 10 Hz. `python -m training gate COPY --camera-bag BAG` fits the gate of a
   copy of the model folder to it (the shipped folder is not touched).
2. Judged on the held-out fold (every image, both domains) through the same camera: the flagged
   share before and after, per variant (FP32, INT8); the held-out images as taken (no camera),
   which fitting must not change; the probe sets (non-lesion photographs, synthetic and spoiled
   frames) after fitting.
3. Cancers among the frames flagged before fitting: how many end as REFER (flagged only as
   'not a lesion image' with a calibrated probability at or above the threshold), per domain at
   that domain's screening point.

Prints the figures and writes data/benchmarks/new_camera.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIT_FRAMES = 400
VARIANTS = {'fp32': 'fp32', 'int8': 'int8'}


def judge(model_dir: Path, precision: str, frames: list[np.ndarray], rows: list[dict]) -> dict:
    from skin_screening.core.classifier import Classifier
    from skin_screening.core.postprocess import REFER, UNASSESSABLE

    out = {}
    for domain in ('dermoscopic', 'clinical'):
        mine = [i for i, r in enumerate(rows) if r['domain'] == domain]
        point = 'screening' if domain == 'dermoscopic' else 'clinical-screening'
        clf = Classifier(model_dir, precision, operating_point=point)
        decisions, reasons = [], []
        for s in range(0, len(mine), 32):
            scores, _ = clf.classify([frames[i] for i in mine[s : s + 32]])
            decisions += scores.decision.tolist()
            reasons += list(scores.reasons)
        clf.close()
        y = np.array([int(rows[i]['y']) for i in mine])
        flagged = np.array([bool(r) for r in reasons])
        d = np.array(decisions)
        out[domain] = {
            'images': len(mine),
            'flagged': int(flagged.sum()),
            'rate': float(flagged.mean()),
            'reasons': dict(Counter(r for r in reasons if r)),
            'cancers_flagged': int((flagged & (y == 1)).sum()),
            'cancers_flagged_refer': int((flagged & (y == 1) & (d == REFER)).sum()),
            'cancers_flagged_unassessable': int((flagged & (y == 1) & (d == UNASSESSABLE)).sum()),
            'point': point,
        }
    n = sum(v['images'] for v in out.values())
    out['pooled rate'] = sum(v['flagged'] for v in out.values()) / n
    return out


def main() -> int:
    from skin_screening.core.engines import variant_path
    from skin_screening.core.model_card import DEFAULT_MODEL
    from skin_screening.core.precision import Backend, parse_precision
    from skin_screening.core.preprocess import load_rgb

    from training.new_camera import SimulatedCamera, recording_rows, write_camera_bag

    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default=str(REPO / DEFAULT_MODEL))
    args = parser.parse_args()
    model = Path(args.model)
    camera = SimulatedCamera()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / model.name
        shutil.copytree(model, copy)
        bag = Path(tmp) / 'wearer_camera'
        write_camera_bag(bag, recording_rows(model, FIT_FRAMES), camera)
        with (model / 'heldout.csv').open() as f:
            held = list(csv.DictReader(f))
        taken = [load_rgb(r['path']) for r in held]
        through = [camera(im, 100_000 + i) for i, im in enumerate(taken)]  # other noise draws
        result = {'camera': camera.__dict__, 'fit_frames': FIT_FRAMES, 'variants': {}}
        for name, precision in VARIANTS.items():
            result['variants'][name] = {'before': judge(copy, precision, through, held)}
        cmd = [sys.executable, '-m', 'training', 'gate', str(copy), '--camera-bag', str(bag)]
        subprocess.run(cmd, check=True, cwd=REPO)
        record = json.loads((copy / 'model_card.json').read_text())['gate']['camera']
        result['fit'] = {k: v for k, v in record.items() if k != 'rates'}
        for name, precision in VARIANTS.items():
            row = result['variants'][name]
            row['after'] = judge(copy, precision, through, held)
            row['as taken, after'] = judge(copy, precision, taken, held)
            file_name = variant_path(copy, parse_precision(precision), Backend.ONNXRUNTIME).name
            row['fit record'] = record['rates'][file_name]
    for name, row in result['variants'].items():
        print(
            f'{name}: flagged on the held-out fold through the camera: before '
            f'{row["before"]["pooled rate"]:.3f}, after {row["after"]["pooled rate"]:.3f}; '
            f'as taken after {row["as taken, after"]["pooled rate"]:.3f}'
        )
        for domain in ('dermoscopic', 'clinical'):
            b, a = row['before'][domain], row['after'][domain]
            print(
                f'  {domain}: {b["rate"]:.3f} -> {a["rate"]:.3f} ({b["reasons"]} -> '
                f'{a["reasons"]}); cancers flagged before {b["cancers_flagged"]}: REFER '
                f'{b["cancers_flagged_refer"]}, UNASSESSABLE {b["cancers_flagged_unassessable"]}'
            )
        probes = {k: round(v['rate'], 3) for k, v in row['fit record'].items() if 'after' in k}
        print(f'  fit record (judged bag frames, probe sets) after: {probes}')  # fmt: skip
    out = REPO / 'data' / 'benchmarks' / 'new_camera.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + '\n')
    print(f'written {out.relative_to(REPO)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
