"""Operating points: which calibrated probability counts as suspicious, per precision variant.

A model card holds, for every engine file (fp32, fp16, int8 per backend), its OWN calibration
(temperature and bias, fitted on the same validation images through that engine), and named
thresholds on the calibrated probability that every variant shares:

- 'screening': the highest threshold whose recall is >= the target (0.90) on the pooled
  out-of-fold predictions of the cross-validation;
- 'melanoma': the highest threshold whose recall is >= the target on all cancers AND on the
  melanomas alone (where the data has melanomas);
- 'balanced': the threshold of maximum F1 on the same pooled predictions.

Calibrating each variant through its own engine absorbs a variant's logit shift (INT8 rounding
moves logits down): the same threshold then means the same sensitivity at every precision.

A model trained on several imaging domains (dermoscopy and clinical photographs) has points per
domain: the primary domain's are named as above, another domain's carry its name
('clinical-screening') and that domain's own calibration of every variant (fitted on that
domain's validation images), under the file's 'domains':

    card.operating_points = {
        'default': 'screening',
        'points': {'screening': {'threshold': 0.12, 'criterion': 'recall >= 0.90',
                                 'domain': 'dermoscopic', ...},
                   'clinical-screening': {'threshold': 0.3, 'domain': 'clinical', ...}, ...},
        'calibration': {'model.int8-u8.onnx': {'temperature': 1.1, 'bias': -0.4,
                                               'domains': {'clinical': {...}}}, ...},
        ...
    }
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .metrics import bootstrap_interval
from .postprocess import DecisionRule

CARD_DECISION = 'card'  # the card's single decision rule (cards without operating points)
CUSTOM = 'custom'  # a threshold given by hand (node parameter `threshold`)
MELANOMA = 'mel'  # the label, lower case, in HAM10000 (mel) and PAD-UFES-20 (MEL)


class OperatingPointError(ValueError):
    """Unknown operating point, or a variant the card holds no calibration for."""


def names(operating_points: dict) -> list[str]:
    return list(operating_points.get('points', {}))


def point_name(domain: str, kind: str, primary: bool) -> str:
    """'screening' for the primary domain, 'clinical-screening' for another."""
    return kind if primary else f'{domain}-{kind}'


def domain_points(operating_points: dict, domain: str | None) -> dict[str, dict]:
    """The points of `domain` (a card without domains: all of them, whatever is asked)."""
    points = operating_points.get('points', {})
    if not any('domain' in p for p in points.values()):
        return dict(points)
    return {n: p for n, p in points.items() if p.get('domain') == domain}


def domain_default(operating_points: dict, domain: str | None) -> str | None:
    """The point a replay of `domain` data uses: the card's default when it is of that domain,
    else that domain's 'screening' point; None when the card has no point for it."""
    mine = domain_points(operating_points, domain)
    default = operating_points.get('default')
    if default in mine or not mine:
        return default if mine else None
    return next((n for n, p in mine.items() if n.endswith('screening')), next(iter(mine)))


def resolve_rule(
    decision: DecisionRule, operating_points: dict, file_name: str, name: str | None = None
) -> tuple[DecisionRule, str]:
    """The decision rule of engine file `file_name` at operating point `name` (None or '': the
    card's default) -> (rule, the operating point's name)."""
    if not operating_points:
        if name not in (None, '', CARD_DECISION):
            raise OperatingPointError(
                f'operating point {name!r} requested, but the model card has none '
                '(python -m training operating-points adds them)'
            )
        return decision, CARD_DECISION
    name = name or operating_points['default']
    points = operating_points.get('points', {})
    if name not in points:
        raise OperatingPointError(
            f'unknown operating point {name!r}; the card has {sorted(points)}'
        )
    calibration = operating_points.get('calibration', {}).get(file_name)
    if calibration is None:
        raise OperatingPointError(
            f'{file_name} has no calibration in its model card (a variant built after the '
            'operating points were chosen): run python -m training operating-points again'
        )
    domain = points[name].get('domain')
    if domain is not None and domain != calibration.get('domain', domain):
        if domain not in calibration.get('domains', {}):
            raise OperatingPointError(
                f'{file_name} has no {domain} calibration for point {name!r}: run python -m '
                'training operating-points again'
            )
        calibration = calibration['domains'][domain]
    rule = replace(
        decision,
        temperature=float(calibration['temperature']),
        bias=float(calibration['bias']),
        threshold=float(points[name]['threshold']),
    )
    return rule, name


def _rates(y: np.ndarray, caught: np.ndarray) -> dict[str, float]:
    tp = np.sum(caught & y)
    fp = np.sum(caught & ~y)
    pos, neg = y.sum(), (~y).sum()
    recall = tp / pos if pos else math.nan
    ppv = tp / (tp + fp) if tp + fp else 0.0
    return {
        'recall': float(recall),
        'specificity': float(1 - fp / neg) if neg else math.nan,
        'f1': float(2 * ppv * recall / (ppv + recall)) if ppv + recall else 0.0,
    }


def point_figures(
    y: np.ndarray, prob: np.ndarray, threshold: float, groups=None, n_boot: int = 1000
) -> dict:
    """Recall, specificity and F1 at `threshold`, each with its 95 % bootstrap interval drawn by
    group (lesion or patient) when `groups` is given."""
    y = np.asarray(y).astype(bool)
    caught = np.asarray(prob, float) >= threshold
    out = {'threshold': float(threshold), 'frames': int(len(y)), 'positives': int(y.sum())}
    for key, value in _rates(y, caught).items():
        out[key] = value
        out[f'{key}_ci'] = bootstrap_interval(
            lambda i, key=key: _rates(y[i], caught[i])[key], len(y), groups, n_boot=n_boot
        )
    return out


def paired_recall_difference(
    y: np.ndarray, caught_a: np.ndarray, caught_b: np.ndarray, groups=None, n_boot: int = 1000
) -> dict:
    """Recall of decisions a minus recall of decisions b on the SAME frames, with its 95 %
    bootstrap interval (frames resampled together, by group), and the discordant positives:
    cancers only a catches and cancers only b catches."""
    y = np.asarray(y).astype(bool)
    a, b = np.asarray(caught_a, bool), np.asarray(caught_b, bool)

    def diff(i):
        pos = y[i]
        return float(a[i][pos].mean() - b[i][pos].mean()) if pos.any() else math.nan

    return {
        'difference': diff(np.arange(len(y))),
        'ci': bootstrap_interval(diff, len(y), groups, n_boot=n_boot),
        'only_a': int(np.sum(y & a & ~b)),
        'only_b': int(np.sum(y & b & ~a)),
        'positives': int(y.sum()),
    }


def precision_table(
    results: dict[str, dict], points: dict[str, float], reference: str = 'fp32', n_boot=1000
) -> list[dict]:
    """Per precision and operating point: recall, specificity, F1 (bootstrap CIs) on the frames
    the gate let through, how many it did not, and the paired recall difference to `reference`
    on the frames both judged.

    results: precision -> {'y', 'probability', 'assessed' (bool), 'groups', 'key' (frame ids,
    to pair precisions), optionally 'labels' (the dataset's classes: melanoma recall is then
    reported on its own)} ; points: name -> threshold on the calibrated probability."""
    rows = []
    ref = results.get(reference)
    for precision, r in results.items():
        y, prob, ok = np.asarray(r['y']), np.asarray(r['probability']), np.asarray(r['assessed'])
        groups = np.asarray(r['groups'])
        for name, threshold in points.items():
            row = {'precision': precision, 'operating_point': name}
            row |= point_figures(y[ok], prob[ok], threshold, list(groups[ok]), n_boot)
            row['unassessable'] = int((~ok).sum())
            row['unassessable_positives'] = int((~ok & (y == 1)).sum())
            if 'labels' in r:  # melanoma, the rare and deadly one, on its own
                mel = ok & np.array([str(x).lower() == MELANOMA for x in r['labels']])
            if 'labels' in r and mel.any():
                row['melanoma'] = point_figures(
                    y[mel], prob[mel], threshold, list(groups[mel]), n_boot
                ) | {'frames': int(mel.sum())}
            if ref is not None and precision != reference:
                both, mine, theirs = _pair(r, ref)
                row['recall_vs_' + reference] = paired_recall_difference(
                    y[mine][both],
                    prob[mine][both] >= threshold,
                    np.asarray(ref['probability'])[theirs][both] >= threshold,
                    list(groups[mine][both]),
                    n_boot,
                )
            rows.append(row)
    return rows


def _pair(a: dict, b: dict):
    """Indices of the frames a and b share (by key), and which of those both judged."""
    index_b = {k: i for i, k in enumerate(b['key'])}
    mine = np.array([i for i, k in enumerate(a['key']) if k in index_b], np.int64)
    theirs = np.array([index_b[a['key'][i]] for i in mine], np.int64)
    both = np.asarray(a['assessed'])[mine] & np.asarray(b['assessed'])[theirs]
    return both, mine, theirs
