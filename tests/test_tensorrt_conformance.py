"""The TensorRT backend against the REAL compiled bindings of TensorRT 8.6.1, 10.3.0 and 11.4
(their Python names, read from the PyPI wheels) and onnx-tensorrt's operator support matrix.
TensorRT itself cannot run here: what this proves and what it cannot is in the README."""

import enum
import inspect

import onnx
import pytest
from skin_screening.core.engines import tensorrt as backend
from skin_screening.core.precision import Precision

from tests.conftest import REPO
from tests.fake_tensorrt import make_fake_tensorrt
from training.tensorrt_support import (
    WHEELS,
    FetchError,
    backend_names,
    bindings,
    op_problems,
    restricted,
)

VERSIONS = list(WHEELS)  # 8.6.1, 10.3.0, 11.4.0.106
FAKE_OF = {'8.6.1': '8.6', '10.3.0': '10', '11.4.0.106': '11'}


@pytest.fixture(scope='session')
def real():
    cache = REPO / 'data' / 'cache' / 'tensorrt-bindings'
    cache.mkdir(parents=True, exist_ok=True)
    try:
        return {v: bindings(v, cache) for v in VERSIONS}
    except FetchError as exc:
        pytest.skip(f'TensorRT bindings wheels not available (no network to PyPI?): {exc}')


def test_the_parser_finds_every_name_the_backend_reads():
    names = backend_names()
    assert {'execute_async_v3', 'set_tensor_address', 'build_serialized_network'} <= names.used
    assert {'STRONGLY_TYPED', 'EXPLICIT_BATCH', 'FP16', 'INT8'} <= names.probed
    assert not any('Calibrator' in n for n in names.used)  # INT8 from Q/DQ, never calibrated


def test_every_name_the_backend_needs_unconditionally_is_bound_everywhere(real):
    names = backend_names()
    unconditional = names.used - names.probed - {'max_workspace_size'}  # (pre-8.4 fallback)
    for version, bound in real.items():
        missing = sorted(n for n in unconditional if not bound.has(n))
        assert not missing, f'TensorRT {version} lacks {missing}'


@pytest.mark.parametrize('version', VERSIONS)
def test_version_branches_run_against_the_real_names(real, version, ham_model):
    """A fake offering every name (the 10.x one) restricted to what `version` really binds:
    the backend must pick its branch from the real names and touch nothing else."""
    names = real[version]
    trt, seen, absent = restricted(make_fake_tensorrt('10'), names)
    for precision in Precision:
        plan = backend.plan_build(trt, precision)
        backend.build_serialized(
            trt, ham_model / 'model.fp16.onnx', precision, backend.Profile(), workspace_mb=64
        )
        if version == '8.6.1':
            assert plan.network_flags == ('EXPLICIT_BATCH',)  # no strong typing on 8.6
        else:
            assert plan == backend.BuildPlan(('STRONGLY_TYPED',), ())
    assert all(names.has(n) for n in seen)
    assert 'set_memory_pool_limit' in seen and 'max_workspace_size' not in seen


def test_what_the_backend_avoids_is_really_gone(real):
    assert not real['8.6.1'].has('STRONGLY_TYPED')
    for removed in ('FP16', 'EXPLICIT_BATCH', 'IInt8EntropyCalibrator2', 'max_workspace_size'):
        assert not real['11.4.0.106'].has(removed), removed
    assert not real['10.3.0'].has('max_workspace_size')


def _public(cls) -> set[str]:
    return {n for n in vars(cls) if not n.startswith('_')}


def offered(fake) -> set[str]:
    """Names a fake module offers: its attributes, enum members, and the public methods and
    properties of every class it hands out (its own and tests/fake_tensorrt's Fake*)."""
    from tests import fake_tensorrt

    names = set()
    for name, value in vars(fake).items():
        if name == 'built':  # the fake's record of builds, for assertions: not an API name
            continue
        names.add(name)
        if inspect.isclass(value) and issubclass(value, enum.Enum):
            names |= set(value.__members__)
        elif inspect.isclass(value):
            names |= _public(value)
    helpers = [v for n, v in vars(fake_tensorrt).items() if n.startswith('Fake')]
    return names | set().union(*(_public(cls) for cls in helpers))


@pytest.mark.parametrize('version', VERSIONS)
def test_the_unit_test_fakes_offer_only_real_names(real, version):
    names = offered(make_fake_tensorrt(FAKE_OF[version]))
    assert not sorted(n for n in names if not real[version].has(n))


@pytest.mark.parametrize('version', VERSIONS)
@pytest.mark.parametrize('variant', ['model.fp16.onnx', 'model.int8-s8.onnx'])
def test_shipped_tensorrt_variants_parse_on_every_version(ham_model, version, variant):
    assert op_problems(ham_model / variant, version) == []


def test_an_export_tensorrt_cannot_parse_is_caught(ham_model, tmp_path):
    # ONNX Runtime's uint8 INT8 variant: zero points TensorRT does not take
    problems = op_problems(ham_model / 'model.int8-u8.onnx', '10.3.0')
    assert problems and all('zero point' in p or 'uint8' in p for p in problems)
    model = onnx.load(str(ham_model / 'model.fp16.onnx'))
    model.opset_import[0].version = 18  # beyond 8.6's opset 17
    model.graph.node[0].op_type = 'QLinearConv'
    path = tmp_path / 'new.onnx'
    onnx.save(model, str(path))
    problems = op_problems(path, '8.6.1')
    assert any('opset 18' in p for p in problems)
    assert any('QLinearConv is N' in p for p in problems)
    assert not any('opset' in p for p in op_problems(path, '10.3.0'))
