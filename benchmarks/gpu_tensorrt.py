"""Run on a Jetson (JetPack 5/6) or an NVIDIA desktop with TensorRT + pycuda: builds the engines
from the shipped ONNX variants (cached under <model>/engines) and prints the same table as
benchmarks/variants_table.py for the tensorrt backend, beside ONNX Runtime.

    python benchmarks/gpu_tensorrt.py [--model-dir D] [--limit N]

UNVERIFIED ON HARDWARE: written against the TensorRT 8.6/10/11 Python API; TensorRT cannot be
installed where this project is developed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skin_screening.core.engines.tensorrt import import_cuda, import_tensorrt  # noqa: E402
from skin_screening.core.model_card import DEFAULT_MODEL  # noqa: E402

from training.evaluate import evaluate_variants, print_table  # noqa: E402
from training.variants import VariantConfig, build_variants  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model-dir', type=Path, default=REPO / DEFAULT_MODEL)
    p.add_argument('--limit', type=int, default=None)
    args = p.parse_args()
    trt, cuda = import_tensorrt(), import_cuda()  # one clear error where they are missing
    print(f'TensorRT {trt.__version__} on {cuda.Device(0).name()}')
    if not (args.model_dir / 'model.int8-s8.onnx').is_file():
        build_variants(args.model_dir, VariantConfig(backends=('tensorrt',)))
    rows = evaluate_variants(
        args.model_dir,
        backends=('onnxruntime', 'tensorrt'),
        limit=args.limit,
        out=REPO / 'data/benchmarks/tensorrt',
    )
    print_table(rows)
    return 0


if __name__ == '__main__':
    sys.exit(main())
