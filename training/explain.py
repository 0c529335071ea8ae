"""Class activation maps for a model folder: add the 'cam' output to an exported ONNX (models
exported before it existed), write CAM overlays of real images for a human to look at, and
check the CAM against Keras Grad-CAM (the gradient reference) at export time.

    python -m training cam --model-dir data/models/mobilenetv2-a0.5 [--images 8] [--out D]
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from skin_screening.core.classifier import Classifier
from skin_screening.core.explain import CAM_OUTPUT, overlay
from skin_screening.core.model_card import ModelCard
from skin_screening.core.preprocess import load_rgb, prepare

from .graph import add_cam_output
from .model import TrainingError


def ensure_cam(model_dir: Path, images: list[np.ndarray], tolerance: float = 1e-5) -> bool:
    """Give model.fp32.onnx a 'cam' output if it lacks one; logits must not change. Returns True
    if the file changed (its FP16/INT8 variants must then be built again)."""
    import onnx
    import onnxruntime as ort

    path = model_dir / 'model.fp32.onnx'
    model = onnx.load(str(path))
    if any(o.name == CAM_OUTPUT for o in model.graph.output):
        return False
    if not add_cam_output(model):
        raise TrainingError(f'{path}: no pooled linear head found, cannot add a CAM output')
    card = ModelCard.load(model_dir)
    x = np.stack([prepare(image, card.preprocessing) for image in images])
    feed, wanted = {card.input_name: x}, [card.output_name]
    before = ort.InferenceSession(str(path)).run(wanted, feed)[0]
    after = ort.InferenceSession(model.SerializeToString()).run(wanted, feed)[0]
    if not np.max(np.abs(after - before)) <= tolerance:
        raise TrainingError(f'{path}: adding the CAM output changed the logits; not written')
    onnx.save(model, str(path))
    kept = {k: v for k, v in card.files.get(path.name, {}).items() if k not in ('sha256', 'bytes')}
    card.add_file(path, **(kept | {'outputs': [card.output_name, CAM_OUTPUT]}))
    card.save(model_dir)
    return True


def grad_cam(full: Any, images: np.ndarray) -> np.ndarray:
    """Grad-CAM (Selvaraju et al.) of the mean head logit at the feature map that the 'pool'
    layer averages, before its ReLU: N x h x w. The gradient reference for the engine's CAM."""
    import keras
    import tensorflow as tf

    probe = keras.Model(full.input, [full.get_layer('pool').input, full.output])
    with tf.GradientTape() as tape:
        features, logits = probe(tf.convert_to_tensor(images, tf.float32), training=False)
        target = tf.reduce_mean(logits, axis=1)
    grads = tape.gradient(target, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    return tf.reduce_sum(weights * features, axis=-1).numpy()


def gradcam_agreement(full: Any, onnx_path: Path, images: np.ndarray) -> dict[str, float]:
    """How the exported CAM (no gradients) agrees with Keras Grad-CAM on real images: median
    per-image Pearson r of the maps, and how often their hottest cell is the same."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    cam = session.run([CAM_OUTPUT], {session.get_inputs()[0].name: images})[0].mean(axis=1)
    ref = grad_cam(full, images)
    a, b = cam.reshape(len(cam), -1), ref.reshape(len(ref), -1)
    r = [float(np.corrcoef(x, y)[0, 1]) for x, y in zip(a, b)]
    return {
        'images': len(images),
        'pearson_median': float(np.median(r)),
        'pearson_min': float(np.min(r)),
        'same_hottest_cell': float(np.mean(a.argmax(axis=1) == b.argmax(axis=1))),
    }


def write_overlays(classifier: Classifier, paths: list[Path], labels: list[str], out: Path):
    """One PNG per image: the model's view | its CAM overlay, named with label and probability."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, label in zip(paths, labels):
        scores, _, cams, crops = classifier.explain([load_rgb(path)])
        name = f'{path.stem}_{label}_p{scores.probability[0]:.2f}.png'
        side_by_side = np.concatenate([crops[0], overlay(crops[0], cams[0])], axis=1)
        cv2.imwrite(str(out / name), side_by_side[:, :, ::-1])
        written.append(out / name)
    return written


def heldout_examples(model_dir: Path, count: int) -> tuple[list[Path], list[str]]:
    """`count` held-out images, half of them positives where there are enough."""
    rows = list(csv.DictReader((model_dir / 'heldout.csv').open()))
    positives = [r for r in rows if r['y'] == '1'][: count // 2]
    others = [r for r in rows if r['y'] == '0'][: count - len(positives)]
    chosen = positives + others
    return [Path(r['path']) for r in chosen], [r['label'] for r in chosen]
