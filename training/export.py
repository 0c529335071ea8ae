"""Keras -> ONNX (tf2onnx): dynamic batch, named input 'image', outputs 'logits', 'cam' (class
activation map) and 'embedding' (pooled cut-layer activations, for the gate), verified against
Keras."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .graph import add_cam_output, add_embedding_output
from .model import TrainingError


def to_onnx(model: Any, input_size: int, opset: int, output_name: str = 'logits') -> Any:
    """A Keras model (image NHWC -> outputs) as an ONNX ModelProto with stable tensor names."""
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, input_size, input_size, 3), tf.float32, name='image'),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    outputs = proto.graph.output
    if len(outputs) == 1 and outputs[0].name != output_name:
        old = outputs[0].name
        for node in proto.graph.node:
            node.output[:] = [output_name if o == old else o for o in node.output]
        outputs[0].name = output_name
    return proto


def verify_against_keras(
    model: Any, onnx_path: Path, images: np.ndarray, tolerance: float
) -> float:
    """Max |ONNX Runtime - Keras| on real preprocessed images; refuse above `tolerance`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: images.astype(np.float32)}
    got = session.run(['logits'], feed)[0]
    want = np.asarray(model(images, training=False))
    diff = float(np.max(np.abs(got - want)))
    if not diff <= tolerance:
        onnx_path.unlink(missing_ok=True)
        raise TrainingError(
            f'ONNX export differs from Keras by {diff:.2e} > {tolerance:.0e} on real images: '
            'artifact not written'
        )
    return diff


def export_verified(
    model: Any,
    path: Path,
    images: np.ndarray,
    input_size: int,
    opset: int,
    tolerance: float,
    cut_layer: str | None = None,
) -> float:
    proto = to_onnx(model, input_size, opset)
    add_cam_output(proto)
    if cut_layer:
        add_embedding_output(proto, cut_layer)
    path.write_bytes(proto.SerializeToString())
    return verify_against_keras(model, path, images, tolerance)
