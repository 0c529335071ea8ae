"""Variant building on a real model with real calibration images."""

import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from skin_screening.core.engines import open_engine

from training.variants import VariantConfig, build_variants


def _scales(path):
    model = onnx.load(str(path))
    return {
        t.name: numpy_helper.to_array(t)
        for t in model.graph.initializer
        if t.name.endswith('_scale')
    }


@pytest.fixture(scope='module')
def model_copy(ham_model, tmp_path_factory):
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
    s8_zero = [
        numpy_helper.to_array(t)
        for t in onnx.load(str(model_copy / 'model.int8-s8.onnx')).graph.initializer
        if t.name.endswith('_zero_point')
    ]
    assert onnx.TensorProto.UINT8 in u8  # asymmetric uint8 activations for the CPU
    assert all(z.dtype == np.int8 and not z.any() for z in s8_zero)  # symmetric int8 for TRT
    card = (model_copy / 'model_card.json').read_text()
    assert '"flavour": "s8"' in card and '"calibration_images": 32' in card
    out = open_engine(model_copy, 'int8', 'onnxruntime').infer(
        {'image': np.zeros((2, 224, 224, 3), np.float32)}
    )
    assert out['logits'].shape == (2, 1)


@pytest.mark.slow
def test_entropy_calibration_is_not_minmax(model_copy):
    minmax = _scales(model_copy / 'model.int8-u8.onnx')
    build_variants(
        model_copy,
        VariantConfig(precisions=('int8',), calibration_images=32, calibration_method='entropy'),
    )
    entropy = _scales(model_copy / 'model.int8-u8.onnx')
    activation = [n for n in entropy if n in minmax and entropy[n].size == 1]
    narrower = sum(float(entropy[n]) < float(minmax[n]) * 0.99 for n in activation)
    assert narrower > len(activation) // 4, 'entropy clipped no more ranges than min-max'


def test_calibration_never_uses_heldout_images(ham_model):
    import csv

    from training.variants import calibration_paths

    held = {r['path'] for r in csv.DictReader((ham_model / 'heldout.csv').open())}
    paths = calibration_paths(ham_model, None, 300, seed=0)
    assert len(paths) == 300 and not {str(p) for p in paths} & held
