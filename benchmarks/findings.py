"""The findings node (issue: findings and the session report), measured with the real nodes.

    uv run python benchmarks/findings.py sample    # data/sessions/sample: report + screenshot
    uv run python benchmarks/findings.py soak      # 10,000 frames, alerts every few seconds:
                                                   # the evidence never exceeds its disk bound
    uv run python benchmarks/findings.py latency   # the inference path with and without it

Bags are dwell bags (core/dwell.py) of the embedded sample images: the camera stays 20 frames on
each lesion, alternating the model's most and least suspicious ones, so an alert rises and
clears every 40 frames. Figures print as medians/ratios and go to data/benchmarks/findings/.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
from skin_screening.core.model_card import DEFAULT_MODEL  # noqa: E402

MODEL = REPO / DEFAULT_MODEL
OUT = REPO / 'data' / 'benchmarks' / 'findings'


def lesions(n: int = 4):
    """n sample images, alternating the least and most suspicious by the shipped model."""
    from skin_screening.core.bags import LabelledFrame
    from skin_screening.core.classifier import Classifier
    from skin_screening.core.preprocess import load_rgb

    rows = list(csv.DictReader((REPO / 'data/samples/labels.csv').open()))
    frames = [load_rgb(REPO / 'data/samples' / r['path']) for r in rows]
    clf = Classifier(MODEL, 'fp32', 'onnxruntime')
    p = np.concatenate([clf.classify(frames[i : i + 16])[0].probability for i in range(0, 64, 16)])
    clf.close()
    order = np.argsort(p)
    pick = [i for pair in zip(order[: n // 2], order[::-1][: n // 2]) for i in pair]
    cancers = ('mel', 'bcc', 'akiec')
    return [
        LabelledFrame(
            frames[i],
            int(rows[i]['label'] in cancers),
            rows[i]['label'],
            rows[i]['image_id'],
            rows[i]['group'],
        )
        for i in pick
    ]


def dwell_bag(path: Path, frames: int, side: int | None = None) -> Path:
    """`frames` frames, 20 per lesion; `side`: frames resized to side x side (a long soak)."""
    import cv2
    from skin_screening.core.bags import write_bag
    from skin_screening.core.dwell import dwell_frames

    base = lesions()
    if side:
        base = [dataclasses.replace(f, rgb=cv2.resize(f.rgb, (side, side))) for f in base]
    repeats = -(-frames // (20 * len(base)))
    write_bag(path, itertools.islice(dwell_frames(base * repeats, 20), frames), rate_hz=30.0)
    return path


def env() -> dict:
    from skin_screening.launching import ros_environment

    return ros_environment(
        os.environ, domain=os.environ.get('ROS_DOMAIN_ID') or random.randint(101, 200)
    )


def sample() -> None:
    from skin_screening.core.session_report import build_report
    from skin_screening.replay import account, replay

    from tests.browser import chromium, screenshot

    target = REPO / 'data' / 'sessions' / 'sample'
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        bag = dwell_bag(Path(tmp) / 'bag', 160)
        run = replay(
            bag,
            MODEL,
            'int8',
            'onnxruntime',
            target,
            rate=1.0,
            env=env(),
            params={'findings': {'jpeg_quality': 80}, 'inference': {'publish_cam': True}},
        )
    counts = account(run)
    assert counts['complete'], counts['reasons']
    shutil.rmtree(target / 'logs', ignore_errors=True)
    report = build_report(run, out=target / 'report.html')
    print(report)
    if chromium():
        png = screenshot(report, REPO / 'data' / 'sessions' / 'sample_report.png', 1000, 1800)
        print(f'{REPO / "data/sessions/sample_report.png"} ({png.shape[1]}x{png.shape[0]})')


def folder_bytes(root: Path) -> tuple[int, int]:
    """(total, largest file) under root. Not a snapshot: a file dropped after it was counted
    and one written before the scan ends are both counted, so a scan can exceed the true total
    by up to one file (the store's own accounting is checked exactly in tests/test_findings)."""
    total = largest = 0
    for f in root.rglob('*'):
        try:
            size = f.stat().st_size if f.is_file() else 0
        except FileNotFoundError:  # replaced or dropped while counted
            continue
        total, largest = total + size, max(largest, size)
    return total, largest


def soak(frames: int, bound_mb: float, rate: float) -> dict:
    from skin_screening.replay import operational, replay

    with tempfile.TemporaryDirectory() as tmp:
        bag = dwell_bag(Path(tmp) / 'bag', frames, side=224)
        findings = Path(tmp) / 'out' / 'findings'
        peak, largest, stop = [0], [0], threading.Event()

        def watch():
            while not stop.is_set():
                if findings.is_dir():
                    total, big = folder_bytes(findings)
                    peak[0], largest[0] = max(peak[0], total), max(largest[0], big)
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        start = time.monotonic()
        run = replay(
            bag,
            MODEL,
            'int8',
            'onnxruntime',
            Path(tmp) / 'out',
            rate=rate,
            env=env(),
            params={'findings': {'max_disk_mb': bound_mb}},
            timeout_s=3600,
        )
        stop.set()
        watcher.join()
        row = operational(run)
        episodes = [json.loads(p.read_text()) for p in findings.glob('*/episode.json')]
        records = [json.loads(p.read_text()) for p in findings.glob('*/[0-9]*.json')]
        result = {
            'rate': 'as fast as answered' if rate == 0 else f'{rate} x recorded (30 Hz)',
            'frames': row['frames'],
            'answered': row['answered'],
            'alerts_raised': row['alerts_raised'],
            'findings': len(episodes),
            'seconds': round(time.monotonic() - start, 1),
            'bound_mb': bound_mb,
            'peak_mb': round(peak[0] / 1e6, 3),
            'largest_file_kb': round(largest[0] / 1e3, 1),
            'final_mb': round(folder_bytes(findings)[0] / 1e6, 3),
            'images_dropped': sum(e['dropped'] for e in episodes),
            'kept_frames': sum(len(e['kept']) for e in episodes),
            'kept_frames_received_by_findings': sum(r['has_frame'] for r in records),
        }
    print(json.dumps(result, indent=2))
    assert result['final_mb'] <= bound_mb, 'disk bound exceeded'
    assert peak[0] <= bound_mb * 1e6 + largest[0], (
        'disk bound exceeded (beyond one file in flight)'
    )
    return result


def latency(frames: int) -> dict:
    """Replay latency (player publish -> recorder receipt, through the inference node) at the
    camera's 30 Hz, with and without the findings node, alternating 3 times each."""
    from skin_screening.replay import operational, replay

    rows = {'with': [], 'without': []}
    with tempfile.TemporaryDirectory() as tmp:
        bag = dwell_bag(Path(tmp) / 'bag', frames)
        for i in range(3):
            for mode in ('with', 'without'):
                run = replay(
                    bag,
                    MODEL,
                    'int8',
                    'onnxruntime',
                    Path(tmp) / f'{mode}{i}',
                    rate=1.0,
                    env=env(),
                    without=('findings',) if mode == 'without' else (),
                )
                rows[mode].append(operational(run))
    result = {
        mode: {
            'latency_median_ms': round(float(np.median([r['latency_median_ms'] for r in rs])), 2),
            'latency_p99_ms': round(float(np.median([r['latency_p99_ms'] for r in rs])), 2),
            'inference_median_ms': round(
                float(np.median([r['inference_median_ms'] for r in rs])), 2
            ),
            'answered': [r['answered'] for r in rs],
        }
        for mode, rs in rows.items()
    }
    result['median_ratio_with/without'] = round(
        result['with']['latency_median_ms'] / result['without']['latency_median_ms'], 3
    )
    result['p99_ratio_with/without'] = round(
        result['with']['latency_p99_ms'] / result['without']['latency_p99_ms'], 3
    )
    print(json.dumps(result, indent=2))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('what', choices=['sample', 'soak', 'latency'])
    parser.add_argument('--frames', type=int, default=None)
    parser.add_argument('--bound-mb', type=float, default=2.0)
    parser.add_argument(
        '--rate',
        type=float,
        default=1.0,
        help="soak: 1 = the camera's 30 Hz, 0 = as fast as answered",
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.what == 'sample':
        sample()
    elif args.what == 'soak':
        result = soak(args.frames or 10_000, args.bound_mb, args.rate)
        name = 'soak.json' if args.rate else 'soak_max_rate.json'
        (OUT / name).write_text(json.dumps(result, indent=2))
    else:
        result = latency(args.frames or 600)
        (OUT / 'latency.json').write_text(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
