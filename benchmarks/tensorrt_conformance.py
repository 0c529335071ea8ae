"""Issue 20 table: the TensorRT backend against the real bindings of TensorRT 8.6.1 / 10.3.0 / 11.4
and the shipped variants against onnx-tensorrt's operator support matrix.

    uv run python benchmarks/tensorrt_conformance.py [--model-dir data/models/<name>]

Downloads the bindings wheels (pip, cached in data/cache/tensorrt-bindings), then per version:
the names the backend reads unconditionally (all must be bound), the branch-dependent names it
touched when run against a fake restricted to that version's names, the names it avoids there
(absent = proven by the bindings; present = avoided by choice), and the parser problems of
model.fp16.onnx and model.int8-s8.onnx. Writes data/benchmarks/tensorrt/conformance.txt.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'ros_ws/src/skin_screening'))
from skin_screening.core.model_card import DEFAULT_MODEL  # noqa: E402


def main() -> int:
    from skin_screening.core.engines import tensorrt as backend
    from skin_screening.core.precision import Precision

    from tests.fake_tensorrt import make_fake_tensorrt
    from training.tensorrt_support import (
        WHEELS,
        backend_names,
        bindings,
        op_problems,
        restricted,
        support_matrix,
    )

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model-dir', type=Path, default=REPO / DEFAULT_MODEL)
    p.add_argument('--out', type=Path, default=REPO / 'data/benchmarks/tensorrt')
    args = p.parse_args()
    cache = REPO / 'data/cache/tensorrt-bindings'
    cache.mkdir(parents=True, exist_ok=True)
    names = backend_names()
    conditional = names.probed | {'max_workspace_size'}
    unconditional = names.used - conditional
    matrix = support_matrix()
    lines = [
        f'backend names read from core/engines/tensorrt.py: {len(names.used)} '
        f'({len(unconditional)} unconditional, {len(conditional)} behind hasattr branches)',
        '',
        f'{"TensorRT":<11} {"unconditional":>13} {"branch touched":<52} '
        f'{"avoided, absent here":<68} {"avoided, present":<26} fp16 ops  int8-s8 ops',
    ]
    failed = False
    for version in WHEELS:
        real = bindings(version, cache)
        present = sum(real.has(n) for n in unconditional)
        trt, seen, _ = restricted(make_fake_tensorrt('10'), real)
        for precision in Precision:
            backend.build_serialized(
                trt, args.model_dir / 'model.fp16.onnx', precision, backend.Profile()
            )
        touched = sorted(seen & conditional)
        avoided = conditional - seen
        absent = sorted(n for n in avoided if not real.has(n))
        kept = sorted(n for n in avoided if real.has(n))
        absent += ['IInt8EntropyCalibrator2'] if not real.has('IInt8EntropyCalibrator2') else []
        ops = [
            op_problems(args.model_dir / f, version, matrix)
            for f in ('model.fp16.onnx', 'model.int8-s8.onnx')
        ]
        failed |= present < len(unconditional) or any(ops) or not all(real.has(n) for n in seen)
        lines.append(
            f'{version:<11} {present:>6}/{len(unconditional):<6} {", ".join(touched):<52} '
            f'{", ".join(absent) or "-":<68} {", ".join(kept) or "-":<26} '
            f'{"ok" if not ops[0] else len(ops[0]):<9} {"ok" if not ops[1] else len(ops[1])}'
        )
    lines += [
        '',
        'absent = the name ends no string of the compiled module and is not defined by its '
        '__init__.py (exact);',
        'INT8 stays bound on 11 as DataType.INT8, so BuilderFlag.INT8 cannot be told apart by '
        'name; the backend never reaches it there.',
        'operator sources: '
        + '; '.join(f'{v}: {r["source"]}' for v, r in matrix['versions'].items()),
    ]
    text = '\n'.join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'conformance.txt').write_text(text + '\n')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
