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


def _fresh_quantized(tmp_path):
    """A small Conv-Relu-Conv graph quantized NOW by ONNX Runtime (Q/DQ, int8 per-channel
    weights WITH their zero points), as the variants builder gets it before its rewrites."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    rng = np.random.default_rng(2)
    graph = helper.make_graph(
        [
            helper.make_node('Conv', ['image', 'w1'], ['c1'], pads=[1, 1, 1, 1]),
            helper.make_node('Relu', ['c1'], ['r1']),
            helper.make_node('Conv', ['r1', 'w2'], ['logits'], pads=[1, 1, 1, 1]),
        ],
        'g',
        [helper.make_tensor_value_info('image', TensorProto.FLOAT, [None, 3, 16, 16])],
        [helper.make_tensor_value_info('logits', TensorProto.FLOAT, [None, 4, 16, 16])],
        [
            numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), 'w1'),
            numpy_helper.from_array(rng.normal(size=(4, 8, 3, 3)).astype(np.float32), 'w2'),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    fp32, out = tmp_path / 'fp32.onnx', tmp_path / 'int8.onnx'
    onnx.save(model, str(fp32))
    batches = iter([{'image': rng.uniform(-1, 1, (4, 3, 16, 16)).astype(np.float32)}] * 4)

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    quantize_static(
        str(fp32),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={'ActivationSymmetric': True, 'WeightSymmetric': True},
    )
    return onnx.load(str(out))


def test_dropping_zero_points_of_a_fresh_quantized_graph_is_exact(tmp_path):
    model = _fresh_quantized(tmp_path)
    x = np.random.default_rng(3).uniform(-1, 1, (2, 3, 16, 16)).astype(np.float32)
    before, size = _run(model, x), model.ByteSize()
    assert drop_zero_weight_zero_points(model) == 2  # the two conv weights' zero points
    compact_names(model)
    np.testing.assert_array_equal(_run(model, x), before)
    assert model.ByteSize() < size
    assert model.graph.input[0].name == 'image' and model.graph.output[0].name == 'logits'
    assert drop_zero_weight_zero_points(model) == 0  # nothing left to drop: idempotent
