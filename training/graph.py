"""ONNX graph rewrites applied before making precision variants.

tf2onnx sometimes leaves a BatchNormalization unfolded as Conv -> Mul(per-channel) ->
Add(per-channel) (seen on MobileNetV2's first depthwise conv). Quantizing that raw conv output
per tensor wrecks INT8 accuracy (measured: INT8 vs FP32 logit correlation 0.84 -> see the
closing note), so the affine is folded into the conv's weights and bias, an exact rewrite.
"""

from __future__ import annotations

import numpy as np
from skin_screening.core.explain import CAM_OUTPUT


def _consumers(graph, name: str) -> list:
    return [n for n in graph.node if name in n.input]


def _per_channel(value: np.ndarray | None, channels: int) -> np.ndarray | None:
    if value is None:
        return None
    if value.size == 1:
        return np.full(channels, float(value.reshape(-1)[0]), np.float32)
    if value.size == channels and (value.ndim == 1 or value.shape[1] == channels):
        return value.reshape(channels).astype(np.float32)
    return None


def fold_conv_affine(model):
    """Fold Conv -> Mul(c) [-> Add(c)] into the Conv, in place; returns the number folded."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}

    def const(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    folded = 0
    for conv in [n for n in graph.node if n.op_type == 'Conv']:
        users = _consumers(graph, conv.output[0])
        weight = const(conv.input[1])
        if weight is None or len(users) != 1 or users[0].op_type != 'Mul':
            continue
        if conv.output[0] in outputs:
            continue
        mul = users[0]
        other = [i for i in mul.input if i != conv.output[0]]
        channels = weight.shape[0]
        scale = _per_channel(const(other[0]), channels) if len(other) == 1 else None
        if scale is None:
            continue
        bias = const(conv.input[2]) if len(conv.input) > 2 else np.zeros(channels, np.float32)
        shift, last = np.zeros(channels, np.float32), mul
        after = _consumers(graph, mul.output[0])
        if len(after) == 1 and after[0].op_type == 'Add' and mul.output[0] not in outputs:
            add_other = [i for i in after[0].input if i != mul.output[0]]
            add = _per_channel(const(add_other[0]), channels) if len(add_other) == 1 else None
            if add is not None:
                shift, last = add, after[0]
        new_w = (weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))).astype(np.float32)
        new_b = (bias.reshape(-1) * scale + shift).astype(np.float32)
        w_name, b_name = f'{conv.name}_folded_W', f'{conv.name}_folded_B'
        graph.initializer.extend(
            [numpy_helper.from_array(new_w, w_name), numpy_helper.from_array(new_b, b_name)]
        )
        del conv.input[1:]
        conv.input.extend([w_name, b_name])
        conv.output[0] = last.output[0]
        for node in (mul, last) if last is not mul else (mul,):
            graph.node.remove(node)
        folded += 1
    used = {i for n in graph.node for i in n.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    return folded


def compact_names(model) -> None:
    """Rename internal tensors, nodes and initializers to short ids (in place).

    tf2onnx names carry the whole Keras scope (about 80 bytes each, repeated in every node that
    uses a tensor); they are a seventh of an INT8 file. Graph inputs and outputs keep their names.
    """
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f't{len(names)}')

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
    for i, node in enumerate(graph.node):
        node.name = f'n{i}'
        node.input[:] = [short(x) for x in node.input]
        node.output[:] = [short(x) for x in node.output]
    for info in graph.value_info:
        info.name = short(info.name)
    for info in list(graph.value_info):
        if info.name not in names.values():
            graph.value_info.remove(info)


def drop_zero_weight_zero_points(model) -> int:
    """Remove all-zero zero points of constant (weight) DequantizeLinear inputs (in place).

    Symmetric int8 weights have zero points of 0, which is DequantizeLinear's default when the
    optional input is absent: an exact rewrite that saves one byte per output channel.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    dropped = 0
    for node in graph.node:
        if node.op_type != 'DequantizeLinear' or len(node.input) < 3:
            continue
        x, zero = inits.get(node.input[0]), inits.get(node.input[2])
        if x is None or zero is None or x.data_type != zero.data_type:
            continue
        if x.data_type == 3 and not numpy_helper.to_array(zero).any():  # int8, all zero
            del node.input[2]
            dropped += 1
    used = {i for n in graph.node for i in n.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    return dropped


def add_cam_output(model, logits: str = 'logits') -> bool:
    """Add a class activation map output 'cam' (N x K x h x w, logit units), in place.

    Finds feature map -> GlobalAveragePool -> [Squeeze/Reshape/Flatten] -> MatMul(W) [-> Add(b)]
    -> `logits`, and adds the same head as a 1x1 Conv on the feature map. Pooling is linear,
    so the CAM's spatial mean equals the logits: no gradients, and it survives any engine
    (TensorRT included). Returns False (model unchanged) where the head has another shape.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    if any(o.name == CAM_OUTPUT for o in graph.output):
        return True
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    node, bias = producer.get(logits), None
    if node is not None and node.op_type == 'Add':
        bias = next((i for i in node.input if i in inits), None)
        node = next((producer.get(i) for i in node.input if i not in inits), None)
    if node is None or node.op_type not in ('MatMul', 'Gemm') or node.input[1] not in inits:
        return False
    if node.op_type == 'Gemm' and any(a.name == 'transB' and a.i for a in node.attribute):
        return False
    if node.op_type == 'Gemm' and len(node.input) > 2:
        bias = node.input[2]
    weight = numpy_helper.to_array(inits[node.input[1]])  # C x K
    pooled = producer.get(node.input[0])
    while pooled is not None and pooled.op_type in ('Squeeze', 'Reshape', 'Flatten'):
        pooled = producer.get(pooled.input[0])
    if pooled is None or pooled.op_type != 'GlobalAveragePool' or weight.ndim != 2:
        return False
    channels, heads = weight.shape
    kernel = numpy_helper.from_array(
        np.ascontiguousarray(weight.T.reshape(heads, channels, 1, 1)), 'cam_head_weight'
    )
    b = numpy_helper.to_array(inits[bias]).reshape(-1) if bias else np.zeros(heads, np.float32)
    b = numpy_helper.from_array(np.broadcast_to(b, (heads,)).astype(np.float32), 'cam_head_bias')
    graph.initializer.extend([kernel, b])
    graph.node.append(
        helper.make_node(
            'Conv', [pooled.input[0], kernel.name, b.name], [CAM_OUTPUT], name='cam_head'
        )
    )
    graph.output.append(
        helper.make_tensor_value_info(CAM_OUTPUT, 1, ['N', heads, 'h', 'w'])  # 1 = FLOAT
    )
    return True


def add_embedding_output(model, cut_layer: str) -> bool:
    """Add output 'embedding' (N x C): the global average of the cut layer's activations, in
    place (the unassessable-frame gate's input, computed in the same engine call). The layer's
    tensor is the last one tf2onnx names under it (e.g. '.../block_12_add_1/Add:0'). Returns
    False (model unchanged) when no tensor carries the layer's name."""
    from onnx import TensorProto, helper
    from skin_screening.core.gate import EMBEDDING_OUTPUT

    graph = model.graph
    if any(o.name == EMBEDDING_OUTPUT for o in graph.output):
        return True

    def of_layer(name: str) -> bool:
        return any(p == cut_layer or p.startswith(f'{cut_layer}_') for p in name.split('/')[:-1])

    tensors = [o for n in graph.node for o in n.output if of_layer(o)]
    if not tensors:
        return False
    pooled = f'{EMBEDDING_OUTPUT}_pooled'
    graph.node.extend(
        [
            helper.make_node('GlobalAveragePool', [tensors[-1]], [pooled], name='embedding_pool'),
            helper.make_node('Flatten', [pooled], [EMBEDDING_OUTPUT], name='embedding_flatten'),
        ]
    )
    graph.output.append(
        helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, ['N', 'C'])
    )
    return True
