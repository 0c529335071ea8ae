"""The paper's recipe on cached activations: phase 1 trains the head, phase 2 fine-tunes the top.

Each epoch shows every training image once, in one randomly chosen dihedral view; BatchNorm
layers stay in inference mode; early stopping restores the epoch with the best ROC-AUC on the
inner validation groups (never the fold being scored).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from skin_screening.core.postprocess import stack_views

from .config import TrainConfig
from .model import SplitModel, set_phase
from .prune import MagnitudePruner


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)


def class_weights(y: np.ndarray, enabled: bool, domains: np.ndarray | None = None) -> np.ndarray:
    """Per-sample weights that balance the classes (sum of weights per class equal), within
    each domain when `domains` is given (their cancer shares differ: 19 % vs 54 %)."""
    if not enabled:
        return np.ones(len(y), np.float32)
    domains = np.zeros(len(y)) if domains is None else np.asarray(domains)
    w = np.ones(len(y), np.float32)
    for d in np.unique(domains):
        m = domains == d
        n, pos = int(m.sum()), max(1, int(y[m].sum()))
        w[m] = np.where(y[m] == 1, n / (2 * pos), n / (2 * max(1, n - pos)))
    return w


def epoch_positions(domains: np.ndarray, share: float) -> np.ndarray:
    """Positions (into the training images) one epoch visits: every image once, and the images
    of a domain below `share` of the epoch repeated until it reaches that share (whole passes
    first, then a fixed remainder; the caller shuffles and draws a random view per visit)."""
    positions = [np.arange(len(domains))]
    names, counts = np.unique(domains, return_counts=True)
    if share <= 0 or len(names) < 2:
        return positions[0]
    for name, count in zip(names, counts):
        others = len(domains) - count
        wanted = int(np.ceil(share * others / (1 - share)))  # count + extra = share of total
        if wanted > count:
            mine = np.nonzero(domains == name)[0]
            extra = wanted - count
            positions.append(np.resize(mine, extra))
    return np.concatenate(positions)


def predict_logits(top, acts: np.ndarray, index: np.ndarray, view: int = 0, batch: int = 256):
    out = [
        np.asarray(top(np.asarray(acts[view, index[s : s + batch]], np.float32), training=False))
        for s in range(0, len(index), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def predict_views(top, acts: np.ndarray, index: np.ndarray, views: int) -> np.ndarray:
    """Test-time augmentation on cached views: (N * views) x K logits, a frame's views adjacent."""
    return stack_views([predict_logits(top, acts, index, view=v) for v in range(views)])


def _auc(y: np.ndarray, logits: np.ndarray, domains: np.ndarray, only: str = '') -> float:
    """ROC-AUC of domain `only`, or the mean over the domains (each domain ranks on its own:
    a domain's shifted scores must not count as ranking)."""
    from sklearn.metrics import roc_auc_score

    z = logits.mean(axis=1)
    names = [only] if only else sorted(set(domains))
    return float(np.mean([roc_auc_score(y[domains == d], z[domains == d]) for d in names]))


def channel_std(acts: np.ndarray, index: np.ndarray, sample: int = 2000) -> np.ndarray:
    """Per-channel standard deviation of the cut activations (identity view, training images)."""
    pick = index[:: max(1, len(index) // sample)]
    return np.asarray(acts[0, pick], np.float32).reshape(-1, acts.shape[-1]).std(axis=0)


def _phase(
    model: SplitModel, acts, y, domains, fit, val, epochs, lr, cfg: TrainConfig, rng, history, name
) -> None:
    import keras
    import tensorflow as tf

    set_phase(model, name)
    top = model.top
    visits = epoch_positions(domains[fit], cfg.domain_share)
    steps = max(1, int(np.ceil(len(visits) / cfg.batch_size))) * max(1, epochs)
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.05)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay)
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True, reduction='none')
    heads = int(top.output.shape[-1])

    @tf.function(reduce_retracing=True)
    def step(x, target, weight):  # weight: batch x heads
        with tf.GradientTape() as tape:
            logits = top(x, training=True)
            per_head = tf.stack(
                [loss_fn(target[:, None], logits[:, h : h + 1]) for h in range(heads)], axis=1
            )
            loss = tf.reduce_sum(per_head * weight) / tf.reduce_sum(weight)
        grads = tape.gradient(loss, top.trainable_variables)
        optimizer.apply_gradients(zip(grads, top.trainable_variables))
        return loss

    weights = class_weights(y[fit], cfg.class_weights, domains[fit])[:, None] * np.ones(
        (1, heads), np.float32
    )
    if heads > 1 and cfg.bootstrap_heads:  # a fixed resample per head and phase
        weights = weights * rng.poisson(1.0, weights.shape).astype(np.float32)
    noise = cfg.feature_noise * channel_std(acts, fit) if cfg.feature_noise > 0 else None
    best_auc, best_weights, waited = history.best.get('val_auc', -1.0), top.get_weights(), 0
    pruner = None
    if name == 'finetune' and cfg.prune_sparsity > 0:  # only epochs at full sparsity count
        pruner = MagnitudePruner(top, cfg.prune_sparsity, steps)
        best_auc = -1.0
    views = acts.shape[0]
    for epoch in range(epochs):
        order = rng.permutation(visits)
        losses = []
        for s in range(0, len(order), cfg.batch_size):
            b = order[s : s + cfg.batch_size]
            x = np.asarray(acts[rng.integers(0, views, len(b)), fit[b]], np.float32)
            if noise is not None:  # per-value noise plus a per-image channel offset of half of it
                x += rng.standard_normal(x.shape, np.float32) * noise
                x += rng.standard_normal((len(b), 1, 1, x.shape[-1]), np.float32) * noise / 2
            losses.append(float(step(x, y[fit[b]].astype(np.float32), weights[b])))
            if pruner is not None:
                pruner.after_step()
        auc = _auc(y[val], predict_logits(top, acts, val), domains[val], cfg.stop_domain)
        history.epochs.append(
            {'phase': name, 'epoch': epoch, 'loss': float(np.mean(losses)), 'val_auc': auc}
        )
        print(f'  {name} epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.4f} val AUC {auc:.4f}')
        if pruner is not None and not pruner.at_target:
            continue
        if auc > best_auc:
            best_auc, best_weights, waited = auc, top.get_weights(), 0
            history.best = {'phase': name, 'epoch': epoch, 'val_auc': auc}
        else:
            waited += 1
            if waited >= cfg.patience:
                break
    top.set_weights(best_weights)


def train_cached(
    model: SplitModel,
    acts: np.ndarray,
    y: np.ndarray,
    fit: np.ndarray,
    val: np.ndarray,
    cfg: TrainConfig,
    seed: int,
    domains: np.ndarray | None = None,
) -> History:
    """Both phases; `domains` (one name per image, default one domain) drive domain-balanced
    sampling, per-domain class weights and early stopping (on the mean per-domain ROC-AUC or
    on cfg.stop_domain's)."""
    rng = np.random.default_rng(seed)
    history = History()
    domains = np.zeros(len(y), dtype=str) if domains is None else np.asarray(domains)
    if cfg.stop_domain and cfg.stop_domain not in set(domains[val]):
        raise ValueError(
            f'train.stop_domain {cfg.stop_domain!r} has no validation images; domains: '
            f'{sorted(set(domains))}'
        )
    _phase(
        model, acts, y, domains, fit, val, cfg.head_epochs, cfg.head_lr, cfg, rng, history, 'head'
    )
    _phase(
        model,
        acts,
        y,
        domains,
        fit,
        val,
        cfg.finetune_epochs,
        cfg.finetune_lr,
        cfg,
        rng,
        history,
        'finetune',
    )
    return history
