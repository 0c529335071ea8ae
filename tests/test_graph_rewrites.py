"""The ONNX rewrites applied to variants are exact: same outputs, smaller or simpler graphs."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from training.graph import compact_names, drop_zero_weight_zero_points, fold_conv_affine


def _run(model, x):
    return ort.InferenceSession(model.SerializeToString()).run(None, {'image': x})[0]


def test_conv_mul_add_is_folded_exactly():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    scale = rng.uniform(0.1, 10, (1, 4, 1, 1)).astype(np.float32)
    shift = rng.normal(size=(1, 4, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node('Conv', ['image', 'w'], ['c'], pads=[1, 1, 1, 1]),
            helper.make_node('Mul', ['c', 's'], ['m']),
            helper.make_node('Add', ['m', 'b'], ['out']),
        ],
        'g',
        [helper.make_tensor_value_info('image', TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info('out', TensorProto.FLOAT, [1, 4, 8, 8])],
        [
            numpy_helper.from_array(w, 'w'),
            numpy_helper.from_array(scale, 's'),
            numpy_helper.from_array(shift, 'b'),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    x = rng.normal(size=(1, 3, 8, 8)).astype(np.float32)
    before = _run(model, x)
    assert fold_conv_affine(model) == 1
    assert [n.op_type for n in model.graph.node] == ['Conv']
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-5, atol=1e-5)


def test_compacting_names_and_zero_points_keeps_int8_outputs(ham_model):
    model = onnx.load(str(ham_model / 'model.int8-s8.onnx'))
    x = np.random.default_rng(1).uniform(-1, 1, (2, 224, 224, 3)).astype(np.float32)
    before, size = _run(model, x), model.ByteSize()
    drop_zero_weight_zero_points(model)
    compact_names(model)
    np.testing.assert_array_equal(_run(model, x), before)
    assert model.ByteSize() <= size
    assert model.graph.input[0].name == 'image' and model.graph.output[0].name == 'logits'
