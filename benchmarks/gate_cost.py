"""Issue 18 benchmark: what the unassessable-frame gate costs beside the engine, per variant.

    uv run python benchmarks/gate_cost.py [--frames 200] [--threads 1]

For each variant of the shipped model, single real lesion frames (the embedded samples, then
the held-out list) go through Classifier.classify; the engine time (which includes the pooled
'embedding' output the gate reads) and the gate's own checks (quality statistics of the crop
and the Mahalanobis distances) are timed separately. Prints medians and the gate / engine ratio
(goal: <= 10 %).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skin_screening.core.classifier import Classifier  # noqa: E402
from skin_screening.core.model_card import DEFAULT_MODEL  # noqa: E402
from skin_screening.core.preprocess import load_rgb  # noqa: E402

MODEL = REPO / DEFAULT_MODEL


def frames(count: int) -> list:
    rows = list(csv.DictReader((REPO / 'data' / 'samples' / 'labels.csv').open()))
    images = [load_rgb(REPO / 'data' / 'samples' / r['path']) for r in rows]
    return (images * (count // len(images) + 1))[:count]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--frames', type=int, default=200)
    p.add_argument('--threads', type=int, default=None)
    args = p.parse_args()
    images = frames(args.frames)
    head = f'{"variant":<8} {"engine ms":>9} {"gate ms":>8} {"gate/engine":>11}'
    print(f'{head}  (median, n={len(images)})')
    for precision in ('fp32', 'fp16', 'int8'):
        clf = Classifier(MODEL, precision, threads=args.threads)
        engine, gate = [], []
        for image in images:
            _, ms = clf.classify([image])
            engine.append(ms)
            gate.append(clf.gate_ms)
        clf.close()
        e, g = statistics.median(engine), statistics.median(gate)
        print(f'{precision:<8} {e:>9.2f} {g:>8.2f} {g / e:>11.3f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
