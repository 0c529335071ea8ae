"""Full fine-tuning from images with tf.data augmentation, for GPU users (train.recipe=full).

Everything above the cut trains on freshly augmented images each epoch: dihedral views (flips,
90-degree rotations) and colour jitter, applied to the uint8 frame before THE preprocessing
(core.preprocess), so the tensor scaling stays in one place. tf.distribute.MirroredStrategy
spreads batches over all visible GPUs (one device or CPU: the default strategy).
"""

from __future__ import annotations

import numpy as np
from skin_screening.core.preprocess import Preprocessing, load_rgb, resize, scale

from .config import RunConfig
from .data import LabelledSet
from .features import dihedral
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
):
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    paths = np.array([str(data.paths[i]) for i in index])

    def load(path: bytes) -> np.ndarray:
        image = resize(load_rgb(path.decode()), spec)
        return scale(augment(image, rng) if train else image, spec)

    def mapped(path, label, weight):
        x = tf.numpy_function(load, [path], tf.float32)
        x.set_shape((spec.input_size, spec.input_size, 3))
        return x, label, weight

    w = weights if weights is not None else np.ones(len(index), np.float32)
    ds = tf.data.Dataset.from_tensor_slices((paths, data.y[index].astype(np.float32), w))
    if train:
        ds = ds.shuffle(len(index), seed=seed, reshuffle_each_iteration=True)
    return ds.map(mapped, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(2)


def train_full(
    cfg: RunConfig, data: LabelledSet, fit: np.ndarray, val: np.ndarray, seed: int
) -> tuple[SplitModel, History]:
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices('GPU')
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    spec = Preprocessing(cfg.model.input_size, cfg.model.resize)
    batch = cfg.train.batch_size * strategy.num_replicas_in_sync
    with strategy.scope():
        model = build_model(cfg.model)
        set_phase(model, 'finetune')
        model.front.trainable = False
        model.full.compile(
            optimizer=keras.optimizers.AdamW(
                cfg.train.finetune_lr, weight_decay=cfg.train.weight_decay
            ),
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
            weighted_metrics=[keras.metrics.AUC(from_logits=True, name='auc')],
        )
    weights = class_weights(data.y[fit], cfg.train.class_weights)
    stop = keras.callbacks.EarlyStopping(
        'val_auc', mode='max', patience=cfg.train.patience, restore_best_weights=True
    )
    result = model.full.fit(
        dataset(data, fit, spec, batch, weights, True, seed),
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
    spec = Preprocessing(cfg.model.input_size, cfg.model.resize)
    out = model.full.predict(
        dataset(data, index, spec, cfg.train.batch_size, None, False, 0), verbose=0
    )
    return np.asarray(out)
