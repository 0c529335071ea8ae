"""Variant building on a real model with real calibration images."""

import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from skin_screening.core.engines import open_engine

from training.evaluate import interleaved_ms
from training.variants import VariantConfig, build_variants


def _activation_scales(path):
    """Scales of the activation QuantizeLinear nodes, in graph order."""
    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    return [
        float(inits[n.input[1]])
        for n in graph.node
        if n.op_type == 'QuantizeLinear' and n.input[0] not in inits
    ]


@pytest.fixture(scope='module')
def model_copy(ham_model, ham, tmp_path_factory):
    folder = tmp_path_factory.mktemp('variants')
    for name in ('model.fp32.onnx', 'model_card.json', 'split.csv', 'heldout.csv'):
        shutil.copy(ham_model / name, folder / name)
    return folder


@pytest.mark.slow
def test_flavours_and_fp16_are_built_and_recorded(model_copy, ham):
    build_variants(
        model_copy,
        VariantConfig(
            backends=('onnxruntime', 'tensorrt'),
            calibration_images=32,
            calibration_method='minmax',
        ),
    )
    model = onnx.load(str(model_copy / 'model.fp16.onnx'))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    u8 = {t.data_type for t in onnx.load(str(model_copy / 'model.int8-u8.onnx')).graph.initializer}
    s8 = onnx.load(str(model_copy / 'model.int8-s8.onnx')).graph
    inits = {t.name: numpy_helper.to_array(t) for t in s8.initializer}
    s8_zero = [
        inits[n.input[2]] for n in s8.node if n.op_type == 'QuantizeLinear' and len(n.input) > 2
    ]
    assert len(s8_zero) > 20
    assert onnx.TensorProto.UINT8 in u8  # asymmetric uint8 activations for the CPU
    assert all(z.dtype == np.int8 and not z.any() for z in s8_zero)  # symmetric int8 for TRT
    float_weights = {t.name for t in s8.initializer if t.data_type == onnx.TensorProto.FLOAT}
    kept = [n for n in s8.node if n.op_type == 'Conv' and n.input[1] in float_weights]
    assert len(kept) == 6  # MobileNetV2 blocks 0-1 stay in float, the rest is int8
    card = (model_copy / 'model_card.json').read_text()
    assert '"flavour": "s8"' in card and '"calibration_images": 32' in card
    out = open_engine(model_copy, 'int8', 'onnxruntime').infer(
        {'image': np.zeros((2, 224, 224, 3), np.float32)}
    )
    assert out['logits'].shape == (2, 1)


@pytest.mark.slow
def test_entropy_calibration_is_not_minmax(model_copy):
    def int8_scales(method):
        config = VariantConfig(
            precisions=('int8',), calibration_images=32, calibration_method=method
        )
        build_variants(model_copy, config)
        return _activation_scales(model_copy / 'model.int8-u8.onnx')

    minmax, entropy = int8_scales('minmax'), int8_scales('entropy')
    assert len(minmax) == len(entropy) > 20
    narrower = sum(e < m * 0.99 for m, e in zip(minmax, entropy))
    assert narrower > len(minmax) // 4, 'entropy clipped no more ranges than min-max'


def test_calibration_never_uses_heldout_images(ham_model, ham):
    import csv

    from training.variants import calibration_paths

    held = {r['path'] for r in csv.DictReader((ham_model / 'heldout.csv').open())}
    paths = calibration_paths(ham_model, None, 300, seed=0)
    assert len(paths) == 300 and not {str(p) for p in paths} & held


def test_latency_rounds_interleave_every_engine():
    order = []
    calls = {k: (lambda k=k: order.append(k) or float(len(order))) for k in 'abc'}
    times = interleaved_ms(calls, rounds=4, block=1, settle=1)
    assert {k: len(v) for k, v in times.items()} == {'a': 4, 'b': 4, 'c': 4}
    # each round starts one further along; every call runs once unkept after a switch
    assert ''.join(order) == 'aabbccbbccaaccaabbaabbcc'
    assert times['a'] == [2.0, 12.0, 16.0, 20.0]
