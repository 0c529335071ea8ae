"""Issue 4 benchmark: precision x backend -> size, latency, throughput, F1 on held-out images,
plus the paper's calibration experiment (INT8 F1/latency per calibration-set size and method).

    uv run python benchmarks/variants_table.py [--model-dir D] [--limit N] [--calibration]

Held-out images are the model's heldout.csv (its lesion-grouped test fold, never trained on).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skin_screening.core.model_card import DEFAULT_MODEL  # noqa: E402

from training.evaluate import evaluate_variants, print_table  # noqa: E402
from training.variants import VariantConfig, build_variants  # noqa: E402


def calibration_experiment(model_dir: Path, limit: int | None, threads: int) -> None:
    print('\n## INT8 (u8, ONNX Runtime CPU) by calibration-set size and method')
    print(
        f'{"images":>6} {"method":<10} {"build s":>8} {"F1":>6} {"ΔF1":>6} {"agree":>6} '
        f'{"b1 ms":>6}'
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ('model.fp32.onnx', 'model_card.json', 'split.csv', 'heldout.csv'):
            shutil.copy(model_dir / name, work / name)
        for images in (100, 500, 1000):
            for method in ('minmax', 'entropy', 'percentile'):
                start = time.time()
                build_variants(
                    work,
                    VariantConfig(
                        precisions=('int8',), calibration_images=images, calibration_method=method
                    ),
                )
                built = time.time() - start
                rows = evaluate_variants(
                    work, precisions=('fp32', 'int8'), limit=limit, threads=threads, repeats=30
                )
                int8 = rows[-1]
                print(
                    f'{images:>6} {method:<10} {built:>8.0f} {int8["f1"]:>6.3f} '
                    f'{int8["delta_f1"]:>+6.3f} {int8["agreement"]:>6.3f} '
                    f'{int8["latency_b1_ms"]:>6.2f}',
                    flush=True,
                )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model-dir', type=Path, default=REPO / DEFAULT_MODEL)
    p.add_argument('--limit', type=int, default=None, help='held-out images to score')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--backend', nargs='+', default=['onnxruntime', 'tensorrt'])
    p.add_argument('--calibration', action='store_true', help='also run the calibration sweep')
    p.add_argument('--out', type=Path, default=REPO / 'data/benchmarks/variants')
    args = p.parse_args()
    rows = evaluate_variants(
        args.model_dir,
        precisions=('fp32', 'fp16', 'int8'),
        backends=args.backend,
        limit=args.limit,
        threads=args.threads,
        out=args.out,
    )
    print(f'\n## {rows[0]["images"]} held-out images, {args.threads} threads, medians of one run')
    print_table(rows)
    if args.calibration:
        calibration_experiment(args.model_dir, args.limit, args.threads)
    return 0


if __name__ == '__main__':
    sys.exit(main())
