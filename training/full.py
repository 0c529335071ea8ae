"""Full fine-tuning from images with tf.data augmentation, for GPU users (train.recipe=full).

Everything above the cut trains on freshly augmented images each epoch: dihedral views (flips,
90-degree rotations) and colour jitter, applied to the uint8 frame before THE preprocessing
(core.preprocess), so the tensor scaling stays in one place. tf.distribute.MirroredStrategy
spreads batches over all visible GPUs (one device or CPU: the default strategy).
"""

from __future__ import annotations

import numpy as np
from skin_screening.core.postprocess import stack_views
from skin_screening.core.preprocess import Preprocessing, dihedral, load_rgb, resize, scale

from .config import RunConfig
from .data import LabelledSet
from .distill import distillation_loss
from .model import SplitModel, build_model, set_phase
from .recipe import History, class_weights


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random dihedral view and colour jitter (brightness, contrast, saturation) of uint8 RGB."""
    out = dihedral(image, int(rng.integers(0, 8))).astype(np.float32)
    out = out * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20)  # contrast, brightness
    grey = out.mean(axis=2, keepdims=True)
    out = grey + (out - grey) * rng.uniform(0.8, 1.2)  # saturation
    return np.clip(out, 0, 255).astype(np.uint8)


def dataset(
    data: LabelledSet,
    index: np.ndarray,
    spec: Preprocessing,
    batch: int,
    weights: np.ndarray | None,
    train: bool,
    seed: int,
    view: int = 0,
    targets: np.ndarray | None = None,
):
    """(image, target, weight) batches; target = the label, or [label, teacher logit] rows."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    paths = np.array([str(data.paths[i]) for i in index])

    def load(path: bytes) -> np.ndarray:
        image = resize(load_rgb(path.decode()), spec)
        return scale(augment(image, rng) if train else dihedral(image, view), spec)

    def mapped(path, label, weight):
        x = tf.numpy_function(load, [path], tf.float32)
        x.set_shape((spec.input_size, spec.input_size, 3))
        return x, label, weight

    w = weights if weights is not None else np.ones(len(index), np.float32)
    target = data.y[index].astype(np.float32) if targets is None else targets.astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((paths, target, w))
    if train:
        ds = ds.shuffle(len(index), seed=seed, reshuffle_each_iteration=True)
    return ds.map(mapped, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(2)


def label_auc(keras):
    """ROC-AUC of the logits against the label column (targets may carry a teacher logit)."""

    class LabelAUC(keras.metrics.AUC):
        def update_state(self, y_true, y_pred, sample_weight=None):
            if len(y_true.shape) == 2 and y_true.shape[-1] == 2:
                y_true = y_true[:, 0]
            return super().update_state(y_true, y_pred[:, :1], sample_weight)

    return LabelAUC(from_logits=True, name='auc')


def train_full(
    cfg: RunConfig,
    data: LabelledSet,
    fit: np.ndarray,
    val: np.ndarray,
    seed: int,
    teacher: np.ndarray | None = None,
) -> tuple[SplitModel, History]:
    """Train everything above the cut (everything, for a model trained from scratch) on
    augmented images; with `teacher` (a logit per image of `data`), by distillation."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices('GPU')
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    spec = cfg.model.preprocessing()
    batch = cfg.train.batch_size * strategy.num_replicas_in_sync
    with strategy.scope():
        model = build_model(cfg.model)
        if model.front is not None:  # transfer learning: BatchNorm statistics stay frozen
            set_phase(model, 'finetune')
            model.front.trainable = False
        model.full.compile(
            optimizer=keras.optimizers.AdamW(
                cfg.train.finetune_lr, weight_decay=cfg.train.weight_decay
            ),
            loss=distillation_loss(cfg.train.distill_alpha, cfg.train.distill_temperature),
            weighted_metrics=[label_auc(keras)],
        )
    weights = class_weights(data.y[fit], cfg.train.class_weights)
    stop = keras.callbacks.EarlyStopping(
        'val_auc', mode='max', patience=cfg.train.patience, restore_best_weights=True
    )
    targets = None if teacher is None else np.stack([data.y[fit], teacher[fit]], axis=1)
    result = model.full.fit(
        dataset(data, fit, spec, batch, weights, True, seed, targets=targets),
        validation_data=dataset(data, val, spec, batch, None, False, seed),
        epochs=cfg.train.finetune_epochs,
        callbacks=[stop],
        verbose=2,
    )
    history = History(
        [
            {'phase': 'full', 'epoch': i, 'loss': float(loss), 'val_auc': float(auc)}
            for i, (loss, auc) in enumerate(zip(result.history['loss'], result.history['val_auc']))
        ]
    )
    best = int(np.argmax(result.history['val_auc']))
    history.best = {'phase': 'full', 'epoch': best, 'val_auc': history.epochs[best]['val_auc']}
    return model, history


def predict_images(model: SplitModel, data: LabelledSet, index: np.ndarray, cfg: RunConfig):
    """(N * tta_views) x K logits, the dihedral views of an image adjacent."""
    spec = cfg.model.preprocessing()
    per_view = [
        model.full.predict(
            dataset(data, index, spec, cfg.train.batch_size, None, False, 0, view), verbose=0
        )
        for view in range(cfg.train.tta_views)
    ]
    return stack_views(per_view)
