"""One inference interface over ONNX Runtime and TensorRT (named tensors in, named tensors out).

`open_engine(model_dir, precision, backend)` picks the ONNX variant that the backend runs at that
precision (file names from core.precision.variant_name) and returns an `Engine`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..precision import Backend, Precision, parse_backend, parse_precision, variant_name


class EngineError(RuntimeError):
    """A model or engine that cannot be used: missing, corrupt, incompatible or unavailable."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]  # None = dynamic (the batch)
    dtype: str


class Engine(Protocol):
    precision: Precision
    backend: Backend
    path: Path

    @property
    def inputs(self) -> list[TensorSpec]: ...

    @property
    def outputs(self) -> list[TensorSpec]: ...

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


def warmup(engine: Engine, batch: int = 1, iterations: int = 3) -> None:
    """Run zeros through the engine so the first real frame does not pay for lazy setup."""
    spec = engine.inputs[0]
    shape = tuple(batch if d is None else d for d in spec.shape)
    feed = {spec.name: np.zeros(shape, np.dtype(spec.dtype))}
    for _ in range(iterations):
        engine.infer(feed)


def variant_path(
    model_dir: str | Path, precision: Precision | str, backend: Backend | str
) -> Path:
    precision, backend = parse_precision(precision), parse_backend(backend)
    return Path(model_dir) / variant_name(precision, backend)


def open_engine(
    model_dir: str | Path,
    precision: Precision | str = Precision.FP32,
    backend: Backend | str = Backend.ONNXRUNTIME,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
    allow_build: bool = True,
) -> Engine:
    """Open the engine for `precision` on `backend` from a model folder of ONNX variants."""
    precision, backend = parse_precision(precision), parse_backend(backend)
    path = variant_path(model_dir, precision, backend)
    if not path.is_file():
        raise EngineError(
            f'no {precision.value} variant for {backend.value} at {path}; build it with: '
            f'python -m training variants --model-dir {model_dir}'
        )
    if backend is Backend.ONNXRUNTIME:
        from .onnxruntime import OnnxRuntimeEngine

        return OnnxRuntimeEngine(path, precision, threads=threads)
    from .tensorrt import TensorRTEngine

    return TensorRTEngine.from_onnx(
        path,
        precision,
        cache_dir=Path(cache_dir or Path(model_dir) / 'engines'),
        allow_build=allow_build,
    )
