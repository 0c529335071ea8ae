"""Issue 18 benchmark: the backbone table of the zoo's MobileNetV2 models, timed in one run.

    uv run python benchmarks/backbones.py [MODEL_DIR ...]   # default: the two MobileNetV2s

Per model folder: 5-fold CV ROC-AUC (mean ± std over the card's folds), F1 at both operating
points on the pooled out-of-fold predictions (± the spread over folds), the weights file it was
trained from, file sizes, and single-frame engine latency of FP32 and INT8 (ONNX Runtime, all
engines timed in interleaved blocks so host noise hits them alike; medians).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skin_screening.core.classifier import Classifier  # noqa: E402
from skin_screening.core.model_card import ModelCard  # noqa: E402
from skin_screening.core.preprocess import load_rgb, resize  # noqa: E402

from training.evaluate import engine_call, interleaved_ms  # noqa: E402

ZOO = [REPO / 'data/models/mobilenetv2-a0.5', REPO / 'data/models/mobilenetv2-a1.0']


def card_row(model: Path) -> dict:
    card = ModelCard.load(model)
    auc = card.metrics['cv_summary']['at_threshold']['roc_auc']
    points = card.operating_points['points']
    weights = card.training.get('weights', '')
    return {
        'model': card.name,
        'cv_auc': f'{auc["mean"]:.3f} ± {auc["std"]:.3f}',
        **{
            f'f1_{name}': f'{p["pooled_oof"]["f1"]:.3f} ± {p["spread"]["f1"]["std"]:.3f}'
            for name, p in points.items()
        },
        'fp32_mb': card.files['model.fp32.onnx']['bytes'] / 1e6,
        'int8_mb': card.files['model.int8-u8.onnx']['bytes'] / 1e6,
        'weights': weights.split('sha256 ')[-1][:12] if 'sha256' in weights else weights[:40],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('models', nargs='*', type=Path, default=ZOO)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--rounds', type=int, default=20)
    args = p.parse_args()
    rows = [card_row(m) for m in args.models]
    frame = load_rgb(next((REPO / 'data/samples/images').glob('*.jpg')))
    clfs = {
        (i, precision): Classifier(m, precision, threads=args.threads)
        for i, m in enumerate(args.models)
        for precision in ('fp32', 'int8')
    }
    try:
        calls = {
            key: engine_call(clf, resize(frame, clf.card.preprocessing)[None], 1)
            for key, clf in clfs.items()
        }
        times = interleaved_ms(calls, args.rounds, block=10)
    finally:
        for clf in clfs.values():
            clf.close()
    head = (
        f'{"model":<18} {"CV ROC-AUC":>13} {"F1 screening":>14} {"F1 balanced":>14} '
        f'{"fp32 MB":>8} {"int8 MB":>8} {"fp32 ms":>8} {"int8 ms":>8}  weights (sha256)'
    )
    print(head)
    for i, r in enumerate(rows):
        fp32, int8 = (statistics.median(times[(i, p)]) for p in ('fp32', 'int8'))
        print(
            f'{r["model"]:<18} {r["cv_auc"]:>13} {r["f1_screening"]:>14} {r["f1_balanced"]:>14} '
            f'{r["fp32_mb"]:>8.2f} {r["int8_mb"]:>8.2f} {fp32:>8.2f} {int8:>8.2f}  {r["weights"]}'
        )
    print(f'latency: median of {len(next(iter(times.values())))} single-frame calls per engine')
    return int(not np.isfinite(fp32))


if __name__ == '__main__':
    sys.exit(main())
