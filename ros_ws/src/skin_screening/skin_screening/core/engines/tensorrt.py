"""TensorRT backend: build an engine from an ONNX variant on the target, cache it, run it.

UNVERIFIED ON HARDWARE: TensorRT cannot be installed where this project is developed and tested;
its names are checked against the real compiled bindings (tests/test_tensorrt_conformance.py).
The code follows the documented Python API of TensorRT 8.6, 10.x and 11 (name-based tensors,
execute_async_v3) and its build logic is tested against fakes of those three API generations.

Precision comes from the ONNX variant (FP16 ONNX, Q/DQ INT8 ONNX). API generations differ in how
a build honours it, decided here by feature tests, never by version strings:
  * strongly typed networks exist (10.x opt-in flag; 11 always): precision from the graph, no
    builder precision flags;
  * otherwise (8.6): explicit-batch network plus the FP16 / INT8 builder flags (INT8 with Q/DQ
    nodes needs no calibrator).
Engines are cached under a key of ONNX hash, precision, TensorRT version, GPU name, compute
capability and profile; an engine whose metadata does not match is rebuilt, or refused when
building is not allowed. Never loaded blindly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..model_card import sha256_file
from ..precision import Backend, Precision
from . import EngineError, TensorSpec

INSTALL_HINT = (
    'the tensorrt backend needs NVIDIA TensorRT and pycuda: on a Jetson they come with JetPack '
    '(apt: python3-libnvinfer, python3-pycuda); on an x86_64 NVIDIA machine: '
    'uv sync --extra tensorrt. Use backend:=onnxruntime on machines without an NVIDIA GPU.'
)


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise EngineError(f'TensorRT is not installed: {INSTALL_HINT}') from exc
    return tensorrt


def import_cuda() -> Any:
    try:
        import pycuda.autoinit  # noqa: F401  (creates the CUDA context)
        import pycuda.driver as cuda
    except ImportError as exc:
        raise EngineError(f'pycuda is not installed: {INSTALL_HINT}') from exc
    except Exception as exc:  # pycuda raises its own errors without a driver/GPU
        raise EngineError(f'no usable CUDA device for TensorRT ({exc}). {INSTALL_HINT}') from exc
    return cuda


@dataclass(frozen=True)
class Profile:
    """Batch sizes of the optimization profile (dynamic batch)."""

    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 8

    def shapes(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) shapes for an input whose dim 0 is the dynamic batch."""
        if any(d < 0 for d in shape[1:]):
            raise EngineError(f'only the batch dimension may be dynamic, input shape is {shape}')
        return tuple((b, *shape[1:]) for b in (self.min_batch, self.opt_batch, self.max_batch))


@dataclass(frozen=True)
class CacheKey:
    onnx_sha256: str
    precision: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    profile: tuple[int, int, int]

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def file_name(self) -> str:
        return f'model.{self.precision}.{self.digest()}.engine'


@dataclass(frozen=True)
class BuildPlan:
    """How one API generation builds one precision (pure logic, tested on fakes)."""

    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]


def plan_build(trt: Any, precision: Precision) -> BuildPlan:
    creation = trt.NetworkDefinitionCreationFlag
    if hasattr(creation, 'STRONGLY_TYPED'):
        return BuildPlan(('STRONGLY_TYPED',), ())
    flags = {Precision.FP32: (), Precision.FP16: ('FP16',), Precision.INT8: ('INT8', 'FP16')}
    needed = flags[precision]
    missing = [f for f in needed if not hasattr(trt.BuilderFlag, f)]
    if missing:
        raise EngineError(
            f'this TensorRT has neither strongly typed networks nor the {missing} builder flags'
        )
    network = ('EXPLICIT_BATCH',) if hasattr(creation, 'EXPLICIT_BATCH') else ()
    return BuildPlan(network, needed)


def network_flag_bits(trt: Any, plan: BuildPlan) -> int:
    bits = 0
    for name in plan.network_flags:
        bits |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    return bits


def set_workspace(trt: Any, config: Any, megabytes: int) -> None:
    if hasattr(config, 'set_memory_pool_limit'):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, megabytes << 20)
    else:  # before 8.4
        config.max_workspace_size = megabytes << 20


def build_serialized(
    trt: Any,
    onnx_path: Path,
    precision: Precision,
    profile: Profile,
    timing_cache: Path | None = None,
    workspace_mb: int = 1024,
) -> bytes:
    """Parse the ONNX variant and build a serialized engine for `precision`."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    plan = plan_build(trt, precision)
    network = builder.create_network(network_flag_bits(trt, plan))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f'TensorRT cannot parse {onnx_path}: {errors}')
    config = builder.create_builder_config()
    set_workspace(trt, config, workspace_mb)
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    optimization = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        optimization.set_shape(tensor.name, *profile.shapes(tuple(tensor.shape)))
    config.add_optimization_profile(optimization)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b''
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(
            f'TensorRT failed to build an engine from {onnx_path} ({precision.value})'
        )
    if timing_cache is not None:
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def device_identity(cuda: Any) -> tuple[str, str]:
    device = cuda.Device(0)
    major, minor = device.compute_capability()
    return str(device.name()), f'{major}.{minor}'


def cache_key(trt: Any, cuda: Any, onnx_path: Path, precision: Precision, profile: Profile):
    gpu, capability = device_identity(cuda)
    return CacheKey(
        onnx_sha256=sha256_file(onnx_path),
        precision=precision.value,
        tensorrt_version=str(trt.__version__),
        gpu_name=gpu,
        compute_capability=capability,
        profile=(profile.min_batch, profile.opt_batch, profile.max_batch),
    )


def check_cached(engine_path: Path, key: CacheKey) -> bool:
    """True when a cached engine exists, its metadata matches `key` exactly and its bytes are the
    ones written at build time (a damaged engine file is rebuilt, never deserialized)."""
    meta = engine_path.with_suffix('.json')
    if not engine_path.is_file() or not meta.is_file():
        return False
    try:
        recorded = json.loads(meta.read_text())
    except ValueError:
        return False
    if recorded.get('key') != asdict(key) | {'profile': list(key.profile)}:
        return False
    return recorded.get('engine_sha256') == sha256_file(engine_path)


class TensorRTEngine:
    backend = Backend.TENSORRT

    def __init__(self, engine_path: Path, precision: Precision):
        self.path, self.precision = Path(engine_path), precision
        self._trt, self._cuda = import_tensorrt(), import_cuda()
        runtime = self._trt.Runtime(self._trt.Logger(self._trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise EngineError(f'TensorRT cannot deserialize {self.path} (corrupt or incompatible)')
        self._context = self._engine.create_execution_context()
        self._stream = self._cuda.Stream()
        self._device: dict[str, tuple[Any, int]] = {}
        self._names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]

    @classmethod
    def from_onnx(
        cls,
        onnx_path: Path,
        precision: Precision,
        cache_dir: Path,
        profile: Profile = Profile(),
        allow_build: bool = True,
    ) -> TensorRTEngine:
        trt, cuda = import_tensorrt(), import_cuda()
        key = cache_key(trt, cuda, onnx_path, precision, profile)
        engine_path = Path(cache_dir) / key.file_name()
        if not check_cached(engine_path, key):
            if not allow_build:
                raise EngineError(
                    f'no engine for {onnx_path.name} built by TensorRT {key.tensorrt_version} on '
                    f'{key.gpu_name} (sm {key.compute_capability}) in {cache_dir}; building is off'
                )
            engine_path.parent.mkdir(parents=True, exist_ok=True)
            timing = Path(cache_dir) / f'timing.{key.tensorrt_version}.{key.gpu_name}.cache'
            engine_path.write_bytes(
                build_serialized(trt, onnx_path, precision, profile, timing_cache=timing)
            )
            meta = {
                'key': asdict(key) | {'profile': list(key.profile)},
                'onnx': str(onnx_path),
                'engine_sha256': sha256_file(engine_path),
            }
            engine_path.with_suffix('.json').write_text(json.dumps(meta, indent=2))
        return cls(engine_path, precision)

    def _is_input(self, name: str) -> bool:
        return self._engine.get_tensor_mode(name) == self._trt.TensorIOMode.INPUT

    def _spec(self, name: str) -> TensorSpec:
        shape = tuple(None if d < 0 else int(d) for d in self._engine.get_tensor_shape(name))
        dtype = np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name))).name
        return TensorSpec(name, shape, dtype)

    @property
    def inputs(self) -> list[TensorSpec]:
        return [self._spec(n) for n in self._names if self._is_input(n)]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [self._spec(n) for n in self._names if not self._is_input(n)]

    def _buffer(self, name: str, nbytes: int) -> Any:
        held = self._device.get(name)
        if held is None or held[1] < nbytes:
            self._device[name] = (self._cuda.mem_alloc(nbytes), nbytes)
        return self._device[name][0]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda, context = self._cuda, self._context
        for spec in self.inputs:
            array = np.ascontiguousarray(feeds[spec.name], dtype=spec.dtype)
            context.set_input_shape(spec.name, array.shape)
            device = self._buffer(spec.name, array.nbytes)
            cuda.memcpy_htod_async(device, array, self._stream)
            context.set_tensor_address(spec.name, int(device))
        results = {}
        for spec in self.outputs:
            shape = tuple(context.get_tensor_shape(spec.name))
            host = cuda.pagelocked_empty(shape, np.dtype(spec.dtype))
            device = self._buffer(spec.name, host.nbytes)
            context.set_tensor_address(spec.name, int(device))
            results[spec.name] = (host, device)
        if not context.execute_async_v3(self._stream.handle):
            raise EngineError('TensorRT execution failed')
        for host, device in results.values():
            cuda.memcpy_dtoh_async(host, device, self._stream)
        self._stream.synchronize()
        return {name: np.array(host) for name, (host, _) in results.items()}

    def close(self) -> None:
        self._device.clear()
        self._context = self._engine = None
