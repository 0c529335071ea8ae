"""Knowledge distillation: a teacher run's per-fold logits, cached once, guide a student run.

Every cached-recipe run writes `fold_logits.npz`: for each fold k, the logit (mean over heads and
test-time views) that fold k's model gives EVERY image. A student run with
`train.teacher_run=<that run>` trains fold k against the teacher of fold k, which never saw fold
k's images, so the scored fold stays unseen by both. The loss (binary, per head):

    (1 - alpha) * BCE(label, z) + alpha * T^2 * BCE(sigmoid(t / T), z / T)

where t is the teacher logit: the soft term is the temperature-softened KL divergence to the
teacher up to a constant (the teacher's entropy), with Hinton's T^2 gradient scaling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import LabelledSet
from .model import TrainingError

TEACHER_FILE = 'fold_logits.npz'


def save_fold_logits(run_dir: Path, data: LabelledSet, fold: np.ndarray, logits: dict) -> Path:
    """logits: fold number -> N logits of that fold's model for every image of `data`."""
    folds = sorted(logits)
    path = run_dir / TEACHER_FILE
    np.savez_compressed(
        path,
        ids=np.array(data.ids),
        fold=fold,
        folds=np.array(folds),
        logits=np.stack([np.asarray(logits[k], np.float32) for k in folds]),
    )
    return path


def teacher_logits(run_dir: str | Path, data: LabelledSet, fold: np.ndarray, k: int) -> np.ndarray:
    """Fold k's teacher logits for the images of `data`; refuses a teacher with other images or
    another split (its fold-k model could then have seen the images being scored)."""
    path = Path(run_dir) / TEACHER_FILE
    if not path.is_file():
        raise TrainingError(f'no teacher logits at {path}: train the teacher with recipe=cached')
    saved = np.load(path)
    if list(saved['ids']) != list(data.ids) or not np.array_equal(saved['fold'], fold):
        raise TrainingError(
            f'teacher {run_dir} was trained on other images or another split (use the same '
            'data, split and seed as the teacher run)'
        )
    folds = list(saved['folds'])
    if k not in folds:
        raise TrainingError(f'teacher {run_dir} has no model for fold {k} (it has {folds})')
    return saved['logits'][folds.index(k)]


def distillation_loss(alpha: float, temperature: float):
    """Keras loss over targets [label, teacher logit] (N x 2); plain labels give plain BCE."""
    import tensorflow as tf

    def bce(target, logits):
        return tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits), axis=-1
        )

    def loss(y_true, y_pred):
        y_true = tf.cast(y_true, y_pred.dtype)
        if y_true.shape.rank == 1 or y_true.shape[-1] == 1:
            return bce(tf.reshape(y_true, (-1, 1)) + 0 * y_pred, y_pred)
        label, teacher = y_true[:, :1] + 0 * y_pred, y_true[:, 1:2] + 0 * y_pred
        soft = bce(tf.sigmoid(teacher / temperature), y_pred / temperature)
        return (1 - alpha) * bce(label, y_pred) + alpha * temperature**2 * soft

    return loss
