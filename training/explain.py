"""Class activation maps for a model folder: add the 'cam' output to an exported ONNX (models
exported before it existed), and write CAM overlays of real images for a human to look at.

    python -m training cam --model-dir data/models/mobilenetv2-a0.5 [--images 8] [--out D]
"""

from __future__ import annotations

import csv
from pathlib import Path

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
