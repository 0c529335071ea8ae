"""A lesion re-identification descriptor learned from HAM10000's multi-image lesions.

A small head on the frozen MobileNetV2 front's cut activations (the training cache: the same
front and preprocessing as the classifier) maps a view of a lesion to a unit vector. It is
trained with a supervised contrastive loss: two draws of the same lesion (two of its images, or
two dihedral views of its only image) attract, other lesions in the batch repel. Folds are the
classifier's: the head learns on the fit part of its training folds, the merge bound is chosen
on their inner-validation lesions, the held-out fold chooses nothing.

    benchmarks/reid_descriptor.py   (top-1 retrieval and false merges on held-out lesions)
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def head(shape, dim: int, width: int = 256):
    """Cut activations -> unit descriptor: a 1x1 convolution (learnt local features), average
    and max pooling over the frame (invariant to where the lesion sits), a linear projection."""
    import keras

    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(width, 1, activation='relu')(inputs)
    x = keras.layers.Concatenate()(
        [keras.layers.GlobalAveragePooling2D()(x), keras.layers.GlobalMaxPooling2D()(x)]
    )
    x = keras.layers.Dense(dim)(x)
    return keras.Model(inputs, keras.layers.UnitNormalization()(x))


def supcon(z, groups, temperature: float = 0.1):
    import tensorflow as tf

    sim = tf.matmul(z, z, transpose_b=True) / temperature
    n = tf.shape(z)[0]
    eye = tf.eye(n)
    same = tf.cast(tf.equal(groups[:, None], groups[None, :]), tf.float32) - eye
    logits = sim - 1e9 * eye
    log_p = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True)
    return -tf.reduce_mean(tf.reduce_sum(same * log_p, 1) / tf.maximum(tf.reduce_sum(same, 1), 1))


def batches(groups: np.ndarray, index: np.ndarray, lesions_per_batch: int, rng):
    """Endless (image index, view) pairs: two draws per lesion, of two images when it has them."""
    members = defaultdict(list)
    for i in index:
        members[groups[i]].append(i)
    keys = np.array(sorted(members))
    while True:
        pick = rng.choice(keys, lesions_per_batch, replace=False)
        rows, views, labels = [], [], []
        for k, key in enumerate(pick):
            own = members[key]
            two = rng.choice(own, 2, replace=len(own) < 2)
            rows += list(two)
            views += list(rng.choice(8, 2, replace=False))
            labels += [k, k]
        yield np.array(rows), np.array(views), np.array(labels)


def stack_views(acts, rows: np.ndarray, views: np.ndarray) -> np.ndarray:
    """The cut activations of image `rows[j]` in dihedral view `views[j]`, float32."""
    return np.stack([acts[v, i] for i, v in zip(rows, views, strict=True)]).astype(np.float32)


def embed(net, acts, index: np.ndarray, views: np.ndarray, batch: int = 256) -> np.ndarray:
    out = []
    for s in range(0, len(index), batch):
        x = stack_views(acts, index[s : s + batch], views[s : s + batch])
        out.append(net(x, training=False).numpy())
    return np.concatenate(out)


def retrieval(z: np.ndarray, groups: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, int]:
    """Top-1 over queries whose lesion has another image; (top1, same sims, other sims, n)."""
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    same = groups[:, None] == groups[None, :]
    np.fill_diagonal(same, False)
    queries = same.any(1)
    top1 = float(np.mean(same[np.arange(len(z)), sim.argmax(1)][queries]))
    upper = np.triu(np.ones_like(same), 1)
    return top1, sim[same & upper], sim[~same & upper & np.isfinite(sim)], int(queries.sum())
