"""Model size and compute, read from the exported ONNX graph (not hand-written).

Parameters: float initializers with more than one element. MACs (multiply-accumulates) per image:
Conv (grouped and depthwise included: output elements x input channels per group x kernel area)
and Gemm/MatMul with a weight (rows x inner x columns), with shapes from ONNX shape inference at
batch 1. Element-wise ops, pooling and activations are left out (they are memory-bound and a
small fraction of the total). FLOPs = 2 x MACs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def parameter_count(onnx_path: Path) -> int:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    return int(
        sum(
            numpy_helper.to_array(t).size
            for t in model.graph.initializer
            if t.data_type in (1, 10) and np.prod(t.dims) > 1
        )
    )


def _static_shapes(model) -> dict[str, list[int]]:
    import onnx

    graph = model.graph
    for value in graph.input:  # fix the dynamic batch at 1
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(model).graph
    shapes = {}
    for value in [*inferred.value_info, *inferred.input, *inferred.output]:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if dims and all(d > 0 for d in dims):
            shapes[value.name] = dims
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def mac_count(onnx_path: Path) -> int:
    """Multiply-accumulates for one image through Conv, Gemm and MatMul nodes."""
    import onnx

    model = onnx.load(str(onnx_path))
    shapes = _static_shapes(model)
    total = 0
    for node in model.graph.node:
        if node.op_type == 'Conv':
            out, weight = shapes.get(node.output[0]), shapes.get(node.input[1])
            if out is None or weight is None:
                raise ValueError(f'{onnx_path}: no static shape for Conv {node.name}')
            total += int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type in ('Gemm', 'MatMul'):
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            if a is None or b is None:
                raise ValueError(f'{onnx_path}: no static shape for {node.op_type} {node.name}')
            total += int(np.prod(a)) * int(b[-1] if node.op_type == 'MatMul' else _gemm_n(node, b))
    return total


def _gemm_n(node, b: list[int]) -> int:
    trans_b = next((a.i for a in node.attribute if a.name == 'transB'), 0)
    return b[0] if trans_b else b[-1]


def complexity(onnx_path: Path) -> dict[str, float]:
    macs = mac_count(onnx_path)
    return {
        'parameters': parameter_count(onnx_path),
        'mmacs': macs / 1e6,
        'mflops': 2 * macs / 1e6,
    }
