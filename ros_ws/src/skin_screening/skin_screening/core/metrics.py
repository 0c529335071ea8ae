"""Binary screening metrics: one module for training CV, variant evaluation and bag replay."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

THRESHOLD_POLICIES = ('max_f1', 'min_sensitivity')


def expected_calibration_error(y: np.ndarray, prob: np.ndarray, bins: int = 15) -> float:
    """ECE of the positive-class probability over equal-width bins."""
    y, prob = np.asarray(y, float), np.asarray(prob, float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(prob, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(prob[mask].mean() - y[mask].mean())
    return float(ece)


def binary_report(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, precision, recall (sensitivity), specificity, F1, ROC-AUC, PR-AUC and ECE."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y).astype(int)
    prob = np.asarray(prob, float)
    pred = prob >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    both = len(np.unique(y)) == 2
    return {
        'n': int(len(y)),
        'positives': int(y.sum()),
        'threshold': float(threshold),
        'accuracy': (tp + tn) / len(y) if len(y) else math.nan,
        'precision': precision,
        'recall': recall,
        'specificity': tn / (tn + fp) if tn + fp else 0.0,
        'f1': 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        'roc_auc': float(roc_auc_score(y, prob)) if both else math.nan,
        'pr_auc': float(average_precision_score(y, prob)) if both else math.nan,
        'ece': expected_calibration_error(y, prob),
    }


def choose_threshold(
    y: np.ndarray, prob: np.ndarray, policy: str = 'max_f1', min_sensitivity: float = 0.9
) -> float:
    """Decision threshold from validation data.

    max_f1: the threshold with the highest F1. min_sensitivity: the highest threshold whose
    recall is still >= min_sensitivity (a screening tool should not miss cancers).
    """
    from sklearn.metrics import precision_recall_curve

    if policy not in THRESHOLD_POLICIES:
        raise ValueError(f'threshold policy must be one of {THRESHOLD_POLICIES}, not {policy!r}')
    y = np.asarray(y).astype(int)
    prob = np.asarray(prob, float)
    precision, recall, thresholds = precision_recall_curve(y, prob)
    precision, recall = precision[:-1], recall[:-1]
    if policy == 'max_f1':
        f1 = np.where(
            precision + recall > 0, 2 * precision * recall / (precision + recall + 1e-12), 0
        )
        return float(thresholds[int(np.argmax(f1))])
    ok = np.nonzero(recall >= min_sensitivity)[0]
    return float(thresholds[ok[-1]]) if len(ok) else float(thresholds[0])


def fit_calibration(y: np.ndarray, logits: np.ndarray) -> tuple[float, float]:
    """Temperature T and bias b minimising the validation NLL of mean_k sigmoid(z_k / T + b).

    The bias undoes the prior shift that class weights put into the logits (temperature alone
    cannot: it rescales around 0). logits: N or N x K.
    """
    from scipy.optimize import minimize

    y = np.asarray(y, float)
    z = np.asarray(logits, float)
    z = z[:, None] if z.ndim == 1 else z

    def nll(params: np.ndarray) -> float:
        log_t, bias = params
        p = (1 / (1 + np.exp(-(z / math.exp(log_t) + bias)))).mean(axis=1)
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    bounds = [(math.log(0.05), math.log(20.0)), (-10.0, 10.0)]
    result = minimize(nll, np.zeros(2), method='L-BFGS-B', bounds=bounds)
    return float(math.exp(result.x[0])), float(result.x[1])


def error_detection_auroc(y: np.ndarray, decision: np.ndarray, uncertainty: np.ndarray) -> float:
    """How well an uncertainty score ranks the model's own errors above its correct answers."""
    from sklearn.metrics import roc_auc_score

    wrong = np.asarray(decision).astype(int) != np.asarray(y).astype(int)
    if wrong.all() or not wrong.any() or not np.all(np.isfinite(uncertainty)):
        return math.nan
    return float(roc_auc_score(wrong, uncertainty))


def coverage_curve(
    y: np.ndarray,
    prob: np.ndarray,
    uncertainty: np.ndarray,
    threshold: float,
    coverages=(1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5),
) -> list[dict[str, float]]:
    """Accuracy, sensitivity and F1 of the frames kept when the most uncertain are referred."""
    order = np.argsort(uncertainty, kind='stable')
    rows = []
    for coverage in coverages:
        keep = order[: max(1, int(round(coverage * len(order))))]
        report = binary_report(y[keep], prob[keep], threshold)
        rows.append(
            {'coverage': float(coverage)}
            | {k: report[k] for k in ('accuracy', 'recall', 'specificity', 'f1', 'positives')}
        )
    return rows


def mean_std(reports: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per-metric mean and standard deviation over folds."""
    keys = [k for k, v in reports[0].items() if isinstance(v, float)]
    values = {k: np.array([r[k] for r in reports], float) for k in keys}
    return {
        k: {'mean': float(np.nanmean(v)), 'std': float(np.nanstd(v))}
        if np.isfinite(v).any()
        else {'mean': math.nan, 'std': math.nan}  # e.g. epistemic with one head
        for k, v in values.items()
    }


def bootstrap_values(
    statistic: Callable[[np.ndarray], float],
    n: int,
    groups: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """`statistic(indices)` over `n_boot` resamples of the n rows, drawn by group when `groups`
    is given (all frames of a lesion or patient together); non-finite values left out."""
    rng = np.random.default_rng(seed)
    if groups is None or not any(groups):
        members = [np.array([i]) for i in range(n)]
    else:
        by_group: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            by_group.setdefault(g or f'row{i}', []).append(i)
        members = [np.array(v) for v in by_group.values()]
    values = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(members), len(members))
        value = statistic(np.concatenate([members[i] for i in pick]))
        if np.isfinite(value):
            values.append(value)
    return np.asarray(values, float)


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    n: int,
    groups: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """95 % percentile interval of bootstrap_values() (NaN when none is finite)."""
    values = bootstrap_values(statistic, n, groups, n_boot, seed)
    if not len(values):
        return math.nan, math.nan
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k/n (NaN for n = 0)."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
