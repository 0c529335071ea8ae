"""TensorRT backend logic against FAKE tensorrt modules of API 8.6 / 10 / 11 (no GPU here)."""

import dataclasses
import hashlib
import json
import sys

import pytest
from skin_screening.core.engines import EngineError, open_engine
from skin_screening.core.engines import tensorrt as trt_backend
from skin_screening.core.precision import Precision

from tests.fake_tensorrt import make_fake_tensorrt


@pytest.mark.parametrize(
    ('generation', 'precision', 'network', 'builder'),
    [
        ('8.6', Precision.FP32, ('EXPLICIT_BATCH',), ()),
        ('8.6', Precision.FP16, ('EXPLICIT_BATCH',), ('FP16',)),
        ('8.6', Precision.INT8, ('EXPLICIT_BATCH',), ('INT8', 'FP16')),
        ('10', Precision.FP16, ('STRONGLY_TYPED',), ()),
        ('10', Precision.INT8, ('STRONGLY_TYPED',), ()),
        ('11', Precision.FP16, ('STRONGLY_TYPED',), ()),
        ('11', Precision.INT8, ('STRONGLY_TYPED',), ()),
    ],
)
def test_precision_maps_to_build_configuration(generation, precision, network, builder):
    plan = trt_backend.plan_build(make_fake_tensorrt(generation), precision)
    assert plan == trt_backend.BuildPlan(network, builder)


@pytest.mark.parametrize('generation', ['8.6', '10', '11'])
def test_build_sets_profile_flags_workspace_and_timing_cache(generation, tmp_path, ham_model):
    trt = make_fake_tensorrt(generation)
    timing = tmp_path / 'timing.cache'
    timing.write_bytes(b'old')
    onnx = ham_model / 'model.fp16.onnx'
    engine = trt_backend.build_serialized(
        trt, onnx, Precision.FP16, trt_backend.Profile(1, 4, 8), timing_cache=timing
    )
    network, config = trt.built[-1]
    assert engine == b'FAKE-ENGINE'
    assert config.profiles[0].shapes['image'] == (
        (1, 224, 224, 3),
        (4, 224, 224, 3),
        (8, 224, 224, 3),
    )
    assert config.flags == (['FP16'] if generation == '8.6' else [])
    assert config.pool['WORKSPACE'] == 1024 << 20
    assert timing.read_bytes() == b'timing:old'  # the timing cache is read and written back
    expected_bit = 'EXPLICIT_BATCH' if generation == '8.6' else 'STRONGLY_TYPED'
    assert network.flags == 1 << int(trt.NetworkDefinitionCreationFlag[expected_bit])


def test_unparseable_onnx_is_refused(tmp_path):
    bad = tmp_path / 'model.fp32.onnx'
    bad.write_bytes(b'not onnx')
    with pytest.raises(EngineError, match='cannot parse'):
        trt_backend.build_serialized(
            make_fake_tensorrt('10'), bad, Precision.FP32, trt_backend.Profile()
        )


def test_only_the_batch_may_be_dynamic():
    with pytest.raises(EngineError, match='only the batch'):
        trt_backend.Profile().shapes((-1, -1, 224, 3))


def test_cache_key_changes_with_every_input():
    base = trt_backend.CacheKey('a' * 64, 'fp16', '10.3.0', 'Orin', '8.7', (1, 1, 8))
    names = set()
    for field, other in [
        ('onnx_sha256', 'b' * 64),
        ('precision', 'int8'),
        ('tensorrt_version', '10.4.0'),
        ('gpu_name', 'RTX 4090'),
        ('compute_capability', '8.9'),
        ('profile', (1, 4, 8)),
    ]:
        changed = dataclasses.replace(base, **{field: other})
        assert changed.digest() != base.digest(), field
        names.add(changed.file_name())
    assert len(names) == 6


def test_engine_with_other_metadata_is_not_loaded(tmp_path):
    key = trt_backend.CacheKey('a' * 64, 'fp16', '10.3.0', 'Orin', '8.7', (1, 1, 8))
    engine = tmp_path / key.file_name()
    engine.write_bytes(b'engine')
    assert not trt_backend.check_cached(engine, key)  # no metadata: never loaded blindly
    other = dataclasses.replace(key, tensorrt_version='8.6.2')
    meta = {'key': dataclasses.asdict(other) | {'profile': list(other.profile)}}
    engine.with_suffix('.json').write_text(json.dumps(meta))
    assert not trt_backend.check_cached(engine, key)
    meta = {'key': dataclasses.asdict(key) | {'profile': list(key.profile)}}
    engine.with_suffix('.json').write_text(json.dumps(meta))
    assert not trt_backend.check_cached(engine, key)  # no engine hash recorded
    meta['engine_sha256'] = hashlib.sha256(b'engine').hexdigest()
    engine.with_suffix('.json').write_text(json.dumps(meta))
    assert trt_backend.check_cached(engine, key)
    engine.write_bytes(b'engina')  # damaged on disk: rebuilt, never deserialized
    assert not trt_backend.check_cached(engine, key)


def test_tensorrt_backend_without_tensorrt_gives_one_clear_error(ham_model, monkeypatch):
    monkeypatch.setitem(sys.modules, 'tensorrt', None)  # absent, even on a host that has it
    with pytest.raises(EngineError, match='TensorRT is not installed.*backend:=onnxruntime'):
        open_engine(ham_model, 'fp16', 'tensorrt')
