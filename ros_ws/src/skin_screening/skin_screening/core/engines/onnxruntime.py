"""ONNX Runtime backend (CPU): the default everywhere without an NVIDIA GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..precision import Backend, Precision
from . import EngineError, TensorSpec

_ORT_TYPES = {'tensor(float)': 'float32', 'tensor(float16)': 'float16', 'tensor(int64)': 'int64'}


class OnnxRuntimeEngine:
    backend = Backend.ONNXRUNTIME

    def __init__(self, path: str | Path, precision: Precision, threads: int | None = None):
        import onnxruntime as ort

        self.path, self.precision = Path(path), precision
        if not self.path.is_file() or self.path.stat().st_size == 0:
            raise EngineError(f'ONNX model {self.path} is missing or empty')
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(self.path), options, providers=['CPUExecutionProvider']
            )
        except Exception as exc:  # ORT raises its own exception types for bad protobufs/graphs
            raise EngineError(
                f'ONNX Runtime cannot load {self.path} (corrupt, truncated or not an ONNX '
                f'model): {str(exc).splitlines()[0][:300]}'
            ) from exc

    @staticmethod
    def _spec(arg) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
        return TensorSpec(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type))

    @property
    def inputs(self) -> list[TensorSpec]:
        return [self._spec(a) for a in self._session.get_inputs()]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [self._spec(a) for a in self._session.get_outputs()]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self._session.get_outputs()]
        return dict(zip(names, self._session.run(names, feeds)))

    def close(self) -> None:
        self._session = None
