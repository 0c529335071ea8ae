"""FAKE `tensorrt` modules for testing our TensorRT build logic where TensorRT cannot be installed.

They mimic only what the three API generations expose to our code (attribute sets of the
documented Python API): 8.6 (EXPLICIT_BATCH, FP16/INT8 builder flags, no strong typing), 10.x
(STRONGLY_TYPED opt-in, EXPLICIT_BATCH deprecated, flags still present) and 11 (strongly typed
always, FP16/INT8 flags gone). Builders record what they were asked to do. Nothing here runs a GPU.
tests/test_tensorrt_conformance.py checks every name these fakes offer against the REAL bindings
of TensorRT 8.6.1 / 10.3.0 / 11.4, so a fake cannot offer what its version lacks.
"""

from __future__ import annotations

import enum
import types


def _enum(name: str, members: list[str]) -> type:
    return enum.IntEnum(name, {m: i for i, m in enumerate(members)})


class FakeTensor:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


class FakeNetwork:
    def __init__(self, flags):
        self.flags = flags
        self.inputs = [FakeTensor('image', (-1, 224, 224, 3))]

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, i):
        return self.inputs[i]


class FakeProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, lo, opt, hi):
        self.shapes[name] = (lo, opt, hi)


class FakeTimingCache:
    def __init__(self, data):
        self.data = data

    def serialize(self):
        return b'timing:' + self.data


class FakeConfig:
    def __init__(self):
        self.flags, self.profiles, self.pool = [], [], {}
        self.timing_cache = None

    def set_flag(self, flag):
        self.flags.append(flag.name)

    def set_memory_pool_limit(self, pool, size):
        self.pool[pool.name] = size

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)

    def create_timing_cache(self, data):
        return FakeTimingCache(bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.timing_cache = cache

    def get_timing_cache(self):
        return self.timing_cache


def make_fake_tensorrt(generation: str) -> types.SimpleNamespace:
    """A fake `tensorrt` module of API generation '8.6', '10' or '11'."""
    creation = {
        '8.6': ['EXPLICIT_BATCH'],
        '10': ['EXPLICIT_BATCH', 'STRONGLY_TYPED'],
        '11': ['STRONGLY_TYPED', 'PREFER_AOT_PYTHON_PLUGINS'],
    }[generation]
    builder_flags = ['GPU_FALLBACK', 'REFIT'] + ([] if generation == '11' else ['FP16', 'INT8'])
    trt = types.SimpleNamespace(
        __version__={'8.6': '8.6.2', '10': '10.3.0', '11': '11.0.0'}[generation]
    )
    trt.NetworkDefinitionCreationFlag = _enum('NetworkDefinitionCreationFlag', creation)
    trt.BuilderFlag = _enum('BuilderFlag', builder_flags)
    trt.MemoryPoolType = _enum('MemoryPoolType', ['WORKSPACE'])
    trt.built = []

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class Builder:
        def __init__(self, logger):
            self.network = self.config = None

        def create_network(self, flags):
            self.network = FakeNetwork(flags)
            return self.network

        def create_builder_config(self):
            self.config = FakeConfig()
            return self.config

        def create_optimization_profile(self):
            return FakeProfile()

        def build_serialized_network(self, network, config):
            trt.built.append((network, config))
            return b'FAKE-ENGINE'

    class OnnxParser:
        def __init__(self, network, logger):
            self.num_errors = 0

        def parse(self, data):
            if not data.startswith(b'\x08'):  # an ONNX ModelProto starts with ir_version
                self.num_errors = 1
                return False
            return True

        def get_error(self, i):
            return 'fake parser: not an ONNX model'

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    return trt
