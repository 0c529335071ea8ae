"""The paper's recipe on cached activations: phase 1 trains the head, phase 2 fine-tunes the top
(with train.pretrain_domain both on that domain alone, then phase 3 adapts on every domain).

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
    pretrained: dict = field(default_factory=dict)  # the best before the adapt phase


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


def domain_aucs(y: np.ndarray, logits: np.ndarray, domains: np.ndarray) -> dict[str, float]:
    """Validation ROC-AUC per domain (each domain ranks on its own: a domain's shifted scores
    must not count as ranking)."""
    from sklearn.metrics import roc_auc_score

    z = logits.mean(axis=1)
    return {
        str(d): float(roc_auc_score(y[domains == d], z[domains == d]))
        for d in sorted(set(domains))
    }


def channel_std(acts: np.ndarray, index: np.ndarray, sample: int = 2000) -> np.ndarray:
    """Per-channel standard deviation of the cut activations (identity view, training images)."""
    pick = index[:: max(1, len(index) // sample)]
    return np.asarray(acts[0, pick], np.float32).reshape(-1, acts.shape[-1]).std(axis=0)


@dataclass(frozen=True)
class Phase:
    """One phase of the recipe: which layers train, on which images, and which epoch it keeps."""

    name: str  # head (only the head trains) | finetune | adapt (both: everything above the cut)
    epochs: int
    lr: float
    fit: np.ndarray
    val: np.ndarray
    select: str = ''  # the domain whose validation ROC-AUC picks the epoch ('' = the mean)
    guard: str = ''  # an epoch is kept only if this domain's validation ROC-AUC ...
    guard_min: float = -np.inf  # ... stays at or above this
    restart: bool = False  # compete with the weights it starts from, judged by its own criterion
    views: int = 0  # draw from the first `views` cached views (0 = all, camera-like ones too)

    def judge(self, aucs: dict[str, float]) -> tuple[float, bool]:
        value = aucs[self.select] if self.select else float(np.mean(list(aucs.values())))
        return value, not self.guard or aucs[self.guard] >= self.guard_min


def _phase(model: SplitModel, acts, y, domains, phase: Phase, cfg: TrainConfig, rng, history):
    import keras
    import tensorflow as tf

    set_phase(model, 'head' if phase.name == 'head' else 'finetune')
    top, fit, val = model.top, phase.fit, phase.val
    visits = epoch_positions(domains[fit], cfg.domain_share)
    steps = max(1, int(np.ceil(len(visits) / cfg.batch_size))) * max(1, phase.epochs)
    schedule = keras.optimizers.schedules.CosineDecay(phase.lr, steps, alpha=0.05)
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
            # 0, not NaN, for a batch whose bootstrap weights are all 0 (a short last batch:
            # a NaN loss made every weight NaN for the rest of the run)
            loss = tf.math.divide_no_nan(tf.reduce_sum(per_head * weight), tf.reduce_sum(weight))
        grads = tape.gradient(loss, top.trainable_variables)
        optimizer.apply_gradients(zip(grads, top.trainable_variables))
        return loss

    def validate():
        return domain_aucs(y[val], predict_logits(top, acts, val), domains[val])

    weights = class_weights(y[fit], cfg.class_weights, domains[fit])[:, None] * np.ones(
        (1, heads), np.float32
    )
    if heads > 1 and cfg.bootstrap_heads:  # a fixed resample per head and phase
        weights = weights * rng.poisson(1.0, weights.shape).astype(np.float32)
    noise = cfg.feature_noise * channel_std(acts, fit) if cfg.feature_noise > 0 else None
    best_auc, best_weights, waited = history.best.get('val_auc', -1.0), top.get_weights(), 0
    if phase.restart:  # the starting weights are a candidate under this phase's criterion
        aucs = validate()
        best_auc = phase.judge(aucs)[0]
        history.best = {'phase': f'before {phase.name}', 'val_auc': best_auc, 'val_aucs': aucs}
    pruner = None
    if phase.name == 'finetune' and cfg.prune_sparsity > 0:  # only epochs at full sparsity count
        pruner = MagnitudePruner(top, cfg.prune_sparsity, steps)
        best_auc = -1.0
    views = phase.views or acts.shape[0]
    for epoch in range(phase.epochs):
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
        aucs = validate()
        auc, allowed = phase.judge(aucs)
        loss = float(np.mean(losses))
        history.epochs.append(
            {'phase': phase.name, 'epoch': epoch, 'loss': loss, 'val_auc': auc, 'val_aucs': aucs}
        )
        shown = ' '.join(f'{d} {a:.4f}' for d, a in aucs.items()) if len(aucs) > 1 else ''
        print(
            f'  {phase.name} epoch {epoch + 1}/{phase.epochs}: loss {loss:.4f} '
            f'val AUC {auc:.4f} {shown}{"" if allowed else " (guard)"}'
        )
        if pruner is not None and not pruner.at_target:
            continue
        if allowed and auc > best_auc:
            best_auc, best_weights, waited = auc, top.get_weights(), 0
            history.best = {'phase': phase.name, 'epoch': epoch, 'val_auc': auc, 'val_aucs': aucs}
        else:
            waited += 1
            if waited >= cfg.patience:
                break
    top.set_weights(best_weights)


def plan(cfg: TrainConfig, domains: np.ndarray, fit: np.ndarray, val: np.ndarray) -> list[Phase]:
    """The head and fine-tuning phases. With `cfg.pretrain_domain` they are that domain's own
    recipe: its images alone, its dihedral views (no camera-like ones), early stopping on it;
    the adapt phase is planned once they have run."""
    first = cfg.pretrain_domain
    if first:
        fit, val = fit[domains[fit] == first], val[domains[val] == first]
    select, views = first or cfg.stop_domain, cfg.views if first else 0
    return [
        Phase('head', cfg.head_epochs, cfg.head_lr, fit, val, select, views=views),
        Phase('finetune', cfg.finetune_epochs, cfg.finetune_lr, fit, val, select, views=views),
    ]


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
    """The phases; `domains` (one name per image, default one domain) drive domain-balanced
    sampling, per-domain class weights and early stopping (on the mean per-domain ROC-AUC or on
    cfg.stop_domain's). With cfg.pretrain_domain, head and fine-tuning see that domain alone,
    then `adapt` fine-tunes on every domain, keeping only epochs whose pretrain-domain validation
    ROC-AUC stays within cfg.adapt_tolerance of what pretraining reached (or the pretrained
    weights themselves when no epoch does)."""
    rng = np.random.default_rng(seed)
    history = History()
    domains = np.zeros(len(y), dtype=str) if domains is None else np.asarray(domains)
    for key in ('stop_domain', 'pretrain_domain'):
        name = getattr(cfg, key)
        if name and name not in set(domains[val]):
            raise ValueError(
                f'train.{key} {name!r} has no validation images; domains: {sorted(set(domains))}'
            )
    for phase in plan(cfg, domains, fit, val):
        _phase(model, acts, y, domains, phase, cfg, rng, history)
    if cfg.pretrain_domain and cfg.adapt_epochs:
        floor = history.best['val_auc'] - cfg.adapt_tolerance
        adapt = Phase(
            'adapt',
            cfg.adapt_epochs,
            cfg.adapt_lr,
            fit,
            val,
            cfg.stop_domain,
            guard=cfg.pretrain_domain,
            guard_min=floor,
            restart=True,
        )
        history.pretrained = dict(history.best)
        _phase(model, acts, y, domains, adapt, cfg, rng, history)
    return history
