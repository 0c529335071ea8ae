"""Issue 7 benchmark: what the uncertainty costs in the engine on this CPU.

    uv run python benchmarks/heads_latency.py [--heads 1 5] [--threads 2] [--rounds 30]

Builds MobileNetV2 (alpha 0.5, the ../shared ImageNet weights) with K heads, exports each with
the training package's exporter (logits + CAM output, as shipped), and times FP32 ONNX Runtime
at batch 1, interleaving the models round by round so machine noise hits them alike. Also times
one frame with test-time augmentation (8 dihedral views = one batch-8 call). Head weights are
untrained: latency does not depend on their values. Prints medians and ratios to K = 1.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skin_screening.core.engines.onnxruntime import OnnxRuntimeEngine  # noqa: E402
from skin_screening.core.precision import Precision  # noqa: E402
from skin_screening.core.preprocess import Preprocessing, load_rgb, prepare_batch  # noqa: E402

from training.config import ModelConfig  # noqa: E402
from training.evaluate import interleaved_ms  # noqa: E402
from training.export import export_verified  # noqa: E402
from training.model import build_model  # noqa: E402

SAMPLES = REPO / 'data/samples/images'


def export(heads: int, folder: Path, images: np.ndarray) -> Path:
    model = build_model(ModelConfig(heads=heads, weights=ModelConfig().weights_fallback))
    path = folder / f'heads{heads}.onnx'
    export_verified(model.full, path, images, 224, 17, 1e-4)
    return path


def timed(engine: OnnxRuntimeEngine, x: np.ndarray) -> float:
    start = time.perf_counter()
    engine.infer({'image': x})
    return (time.perf_counter() - start) * 1000.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--heads', type=int, nargs='+', default=[1, 5])
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--rounds', type=int, default=30, help='rounds of 10 timed calls per model')
    args = p.parse_args()
    frames = [load_rgb(path) for path in sorted(SAMPLES.glob('*.jpg'))[:8]]
    one = prepare_batch(frames[:1], Preprocessing())
    tta = prepare_batch(frames[:1], Preprocessing(), views=8)
    with tempfile.TemporaryDirectory() as tmp:
        engines = {
            k: OnnxRuntimeEngine(
                export(k, Path(tmp), prepare_batch(frames, Preprocessing())),
                Precision.FP32,
                threads=args.threads,
            )
            for k in args.heads
        }
        calls = {}
        for k, engine in engines.items():
            calls[(k, 1)] = functools.partial(timed, engine, one)
            calls[(k, 8)] = functools.partial(timed, engine, tta)
        for call in calls.values():
            for _ in range(20):  # warm-up
                call()
        times = interleaved_ms(calls, args.rounds, block=10)
    b1 = {k: times[(k, 1)] for k in args.heads}
    b8 = {k: times[(k, 8)] for k in args.heads}
    base = statistics.median(b1[args.heads[0]])
    print(f'FP32 ONNX Runtime, {args.threads} threads, {args.rounds} x 10 calls interleaved')
    titles = ('heads', '1 view ms', 'p90', 'ratio', '8 views ms', 'ratio')
    print(' '.join(f'{t:>10}' for t in titles))
    for k in args.heads:
        m1, m8 = statistics.median(b1[k]), statistics.median(b8[k])
        p90 = float(np.percentile(b1[k], 90))
        cells = (k, f'{m1:.2f}', f'{p90:.2f}', f'{m1 / base:.2f}', f'{m8:.2f}', f'{m8 / base:.2f}')
        print(' '.join(f'{c:>10}' for c in cells))
    return 0


if __name__ == '__main__':
    sys.exit(main())
