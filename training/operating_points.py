"""Operating points of a model folder: thresholds from the CV, calibration per variant engine.

    python -m training operating-points data/models/mobilenetv2-a0.5 --cv-run RUN [RUN ...]

1. Pooled out-of-fold predictions: every fold model of the cross-validation (a training run's
   fold_logits.npz) scores its own test fold, calibrated with that fold's validation calibration
   (metrics.json). The held-out fold of the release model is left out, so its figures stay
   unseen by every choice made here.
2. Thresholds on that pooled calibrated probability, per imaging domain: 'screening' = the
   highest threshold with recall >= 0.90; 'melanoma' = the highest with recall >= 0.90 on all
   cancers AND on the melanomas alone (the rare, deadly one; where the domain has melanomas);
   'balanced' = max F1. Each fold's own threshold gives the spread; each CV fold's figures are
   measured at the threshold the rule chooses on the OTHER folds (nested: a fold never chooses
   the threshold it is judged at); a bootstrap over lesions / patients gives 95 % intervals of
   every threshold and of the recall it gives. training/choosing.py records the ids.
3. Each variant file (fp32, fp16, int8-u8, int8-s8) scores the SAME validation images (the release
   model's inner validation) through its own engine and gets its own calibration, so a
   calibrated probability, and hence each threshold, means the same at every precision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
from skin_screening.core.metrics import (
    binary_report,
    bootstrap_interval,
    choose_threshold,
    fit_calibration,
)
from skin_screening.core.model_card import ModelCard
from skin_screening.core.operating_points import MELANOMA, point_name
from skin_screening.core.postprocess import per_frame, sigmoid
from skin_screening.core.preprocess import load_rgb, prepare_batch

from .choosing import record
from .data import DataError, release_validation, split_set
from .distill import TEACHER_FILE
from .variants import open_variant

SCREENING_RECALL = 0.90
DEFAULT_POINT = 'screening'  # a screening tool's default: miss as few cancers as it can
REPORTED = ('recall', 'specificity', 'f1', 'precision')
BOOTSTRAP = 500
MIN_CALIBRATION = 200  # validation images a domain's calibration needs (else pooled)
FP32_FILE = 'model.fp32.onnx'


def fold_scores(run: Path, data, fold: np.ndarray, skip: int | None = None):
    """-> (logit, calibrated probability) of every image from the training `run`'s fold model
    that did not train on it, calibrated for the image's domain by that fold (NaN where the run
    has no model for the fold, and for fold `skip`)."""
    if not (run / TEACHER_FILE).is_file() or not (run / 'metrics.json').is_file():
        raise DataError(f'{run} is not a cached-recipe training run (no {TEACHER_FILE})')
    saved = np.load(run / TEACHER_FILE)
    if list(saved['ids']) != list(data.ids) or not np.array_equal(saved['fold'], fold):
        raise DataError(f'{run} used other images or another split')
    folds = {f['fold']: f for f in json.loads((run / 'metrics.json').read_text())['cv_folds']}
    logit = np.full(len(data), np.nan, np.float32)  # as saved: probabilities as before
    probability = np.full(len(data), np.nan)
    for row, k in enumerate(int(k) for k in saved['folds']):
        if k == skip:
            continue
        for domain in data.domain_names:
            test = (fold == k) & (data.domains == domain)
            own = folds[k].get('domains', {}).get(domain, folds[k])
            logit[test] = saved['logits'][row][test]
            probability[test] = sigmoid(logit[test] / own['temperature'] + own['bias'])
    return logit, probability


class Oof(NamedTuple):
    """Pooled out-of-fold predictions, one entry per image outside the held-out fold."""

    y: np.ndarray
    p: np.ndarray  # calibrated probability (each fold model's own calibration)
    fold: np.ndarray
    domain: np.ndarray
    mel: np.ndarray
    group: np.ndarray
    id: np.ndarray
    logit: np.ndarray  # the fold model's logit (before calibration)


def pooled_oof(model_dir: Path, cv_runs: list[Path]) -> Oof:
    """Every image outside the held-out fold, scored by the CV model that did not train on
    it, calibrated for its domain."""
    card = ModelCard.load(model_dir)
    held = int(card.data.get('heldout_fold', 0))
    data, fold = split_set(model_dir)
    probability, logit = np.full(len(data), np.nan), np.full(len(data), np.nan)
    for run in cv_runs:
        z, scored = fold_scores(run, data, fold, skip=held)
        probability = np.where(np.isfinite(scored), scored, probability)
        logit = np.where(np.isfinite(scored), z, logit)
    scored = np.isfinite(probability)
    missing = sorted(set(np.unique(fold[fold != held])) - set(np.unique(fold[scored])))
    if missing:
        raise DataError(f'no CV model scored fold(s) {missing}: pass the runs that trained them')
    mel, ids = melanoma(data.labels), np.array(data.ids)
    return Oof(
        data.y[scored], probability[scored], fold[scored], data.domains[scored], mel[scored],
        data.groups[scored], ids[scored], logit[scored],
    )  # fmt: skip


def melanoma(labels) -> np.ndarray:
    return np.array([str(x).lower() == MELANOMA for x in labels], bool)


def screening_threshold(y: np.ndarray, p: np.ndarray, mel: np.ndarray | None = None) -> float:
    """The highest threshold with recall >= 0.90 on all cancers and, where `mel` marks
    melanomas, on the melanomas alone."""
    threshold = choose_threshold(y, p, 'min_sensitivity', SCREENING_RECALL)
    if mel is not None and mel.any():
        ones = np.ones(int(mel.sum()))
        return min(threshold, choose_threshold(ones, p[mel], 'min_sensitivity', SCREENING_RECALL))
    return threshold


def _rules(mel_any: bool) -> dict:
    """Point name -> (rule(y, p, mel) -> threshold, criterion)."""
    rules = {
        'screening': (
            lambda y, p, mel: screening_threshold(y, p),
            f'recall >= {SCREENING_RECALL:.2f}',
        ),
        'melanoma': (
            screening_threshold,
            f'recall >= {SCREENING_RECALL:.2f}, melanoma recall >= {SCREENING_RECALL:.2f}',
        ),
        'balanced': (lambda y, p, mel: choose_threshold(y, p, 'max_f1'), 'max F1'),
    }
    if not mel_any:
        del rules['melanoma']
    return rules


def threshold_intervals(rule, y, p, mel, groups, threshold: float, seed: int) -> dict:
    """95 % intervals, over BOOTSTRAP resamples of whole groups (lesions, patients; the same
    resamples for both), of the threshold the rule chooses and of the recall the chosen
    `threshold` gives."""

    def chosen(i):
        return rule(y[i], p[i], mel[i]) if 0 < y[i].sum() < len(i) else np.nan

    def recall(i):
        return float(np.mean(p[i][y[i] == 1] >= threshold)) if y[i].any() else np.nan

    args = (len(y), [str(g) for g in groups], BOOTSTRAP, seed)
    return {
        'threshold': list(bootstrap_interval(chosen, *args)),
        'recall': list(bootstrap_interval(recall, *args)),
        'resamples': BOOTSTRAP,
        'unit': 'group (lesion or patient)',
    }


def choose_points(
    y, p, fold, domain: str, primary: bool = True, mel=None, groups=None, seed: int = 0
) -> dict:
    """Thresholds on the pooled predictions of one domain. Per CV fold (nested): the threshold
    the rule chooses on the OTHER folds and the fold's figures at it (honest CV figures), and
    the fold's own threshold (the spread); a group bootstrap interval of the threshold and of
    its recall (mel: melanoma mask; groups: lesion or patient per image, default each image)."""
    y, p = np.asarray(y), np.asarray(p)
    mel = np.zeros(len(y), bool) if mel is None else np.asarray(mel, bool)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    points = {}
    for name, (rule, criterion) in _rules(bool(mel.any())).items():
        threshold = rule(y, p, mel)
        pooled = binary_report(y, p, threshold)
        per_fold = []
        for k in np.unique(fold):
            m = fold == k
            nested = rule(y[~m], p[~m], mel[~m]) if (~m).any() else threshold
            at_nested = binary_report(y[m], p[m], nested)
            own = rule(y[m], p[m], mel[m])
            per_fold.append({'fold': int(k), 'own_threshold': own, 'threshold': nested})
            per_fold[-1] |= _pick(at_nested)
        points[point_name(domain, name, primary)] = {
            'domain': domain,
            'threshold': threshold,
            'criterion': criterion,
            'pooled_oof': _pick(pooled)
            | {'n': pooled['n'], 'positives': pooled['positives']}
            | ({'melanoma_recall': float(np.mean(p[mel] >= threshold))} if mel.any() else {}),
            'interval': threshold_intervals(rule, y, p, mel, groups, threshold, seed),
            'folds': per_fold,
            'spread': {
                key: {'mean': float(np.mean(v)), 'std': float(np.std(v))}
                for key in ('own_threshold', 'threshold', *REPORTED)
                for v in [[f[key] for f in per_fold]]
            },
        }
    return points


def _pick(report: dict) -> dict:
    return {k: float(report[k]) for k in REPORTED}


def variant_logits(model_dir: Path, file_name: str, images: np.ndarray) -> tuple:
    """Logits of a variant file on preprocessed images through its own engine -> (logits,
    engine name)."""
    card = ModelCard.load(model_dir)
    engine, backend = open_variant(model_dir, file_name)
    try:
        out = [
            engine.infer({card.input_name: images[s : s + 32]})[card.output_name]
            for s in range(0, len(images), 32)
        ]
    finally:
        engine.close()
    return np.concatenate(out), backend.value


def pooled_domains(val) -> list[str]:
    """The domains with too few validation images for a calibration of their own."""
    return [d for d in val.domain_names if (val.domains == d).sum() < MIN_CALIBRATION]


def calibrate_variants(model_dir: Path, val, oof: Oof | None = None) -> dict:
    """Temperature and bias per variant file and domain, fitted on the `val` images of that
    domain through that file's engine (the primary domain's at the top, the others under
    'domains'). A domain with fewer than MIN_CALIBRATION validation images (the release model's
    clinical photographs: 51) is calibrated on the pooled out-of-fold logits of `oof` instead
    (every clinical photograph of the training folds), each variant shifted by its mean logit
    difference to the FP32 file on those validation images."""
    card = ModelCard.load(model_dir)
    views = card.decision.views
    images = prepare_batch([load_rgb(p) for p in val.paths], card.preprocessing, views)
    primary, *others = val.domain_names
    calibration, fp32_mean, small = {}, {}, pooled_domains(val)
    files = [name for name, info in card.files.items() if 'precision' in info]
    for file_name in sorted(files, key=lambda name: name != FP32_FILE):  # FP32 first
        card.verify(model_dir / file_name)
        logits, engine = variant_logits(model_dir, file_name, images)
        fitted = {}
        for domain in val.domain_names:
            mine = val.domains == domain
            z = per_frame(logits, views)[mine]
            fp32_mean.setdefault(domain, float(np.mean(z)))
            pooled = oof is not None and domain in small
            if pooled:
                d = oof.domain == domain
                temperature, bias = fit_calibration(oof.y[d], oof.logit[d])
                offset = float(np.mean(z)) - fp32_mean[domain]
                bias -= offset / temperature  # sigmoid((z - offset) / T + b)
                extra = {'fitted_on': 'pooled out-of-fold logits', 'logit_offset': offset}
                extra |= {'offset_images': int(mine.sum())}
                count = int(d.sum())
            else:
                temperature, bias = fit_calibration(val.y[mine], z)
                extra, count = {}, int(mine.sum())
            fitted[domain] = {
                'temperature': temperature,
                'bias': bias,
                'mean_logit': float(np.mean(z)),
                'images': count,
            } | extra
            print(
                f'{file_name} {domain}: T {temperature:.3f} b {bias:+.3f} ({engine}, {count} '
                f'{"pooled out-of-fold " if pooled else ""}images)'
            )
        calibration[file_name] = fitted[primary] | {'domain': primary, 'engine': engine}
        if others:
            calibration[file_name]['domains'] = {d: fitted[d] for d in others}
    return {name: calibration[name] for name in files}


def write_operating_points(model_dir: str | Path, cv_runs: list[str | Path]) -> dict:
    model_dir = Path(model_dir)
    runs = [Path(r) for r in cv_runs]
    oof = pooled_oof(model_dir, runs)
    y, p, fold, domains, ids = oof.y, oof.p, oof.fold, oof.domain, oof.id
    names = list(dict.fromkeys(domains.tolist()))
    points = {}
    for domain in names:
        m = domains == domain
        points |= choose_points(
            y[m], p[m], fold[m], domain, domain == names[0], oof.mel[m], oof.group[m]
        )
    val = release_validation(model_dir)
    calibration = calibrate_variants(model_dir, val, oof)
    card = ModelCard.load(model_dir)
    held = int(card.data.get('heldout_fold', 0))
    nested = {int(k): ids[fold != k] for k in np.unique(fold)}
    record(model_dir, 'thresholds', 'operating-point thresholds', {held: ids} | nested)
    chose = [*val.ids, *ids[np.isin(domains, pooled_domains(val))]]
    record(model_dir, 'variant-calibration', 'calibration of every variant', {held: chose})
    card.operating_points = {
        'default': DEFAULT_POINT,
        'points': points,
        'calibration': calibration,
        'chosen_on': {
            'thresholds': 'pooled out-of-fold predictions of CV folds '
            f'{sorted(set(fold.tolist()))}, per domain ('
            + ', '.join(
                f'{d}: {int((domains == d).sum())} images, {int(y[domains == d].sum())} positives'
                for d in names
            )
            + '), held-out fold excluded',
            'calibration': 'inner validation of the release model, per domain ('
            + ', '.join(
                f'{d}: {int((val.domains == d).sum())} images, '
                f'{int(val.y[val.domains == d].sum())} positives, '
                f'{len(set(val.groups[val.domains == d]))} groups'
                for d in val.domain_names
            )
            + '), every variant through its own engine',
            'cv_runs': [r.name for r in runs],
        },
    }
    # The card's single rule (read by tools that know no operating points): FP32 at the default.
    card.decision = card.rule('model.fp32.onnx')[0]
    card.save(model_dir)
    for name, point in points.items():
        s, ci = point['spread'], point['interval']
        print(
            f'{name}: threshold {point["threshold"]:.4f} (95 % {ci["threshold"][0]:.3f}-'
            f'{ci["threshold"][1]:.3f}; folds {s["own_threshold"]["mean"]:.3f} ± '
            f'{s["own_threshold"]["std"]:.3f}); pooled recall {point["pooled_oof"]["recall"]:.3f}'
            f' (95 % {ci["recall"][0]:.3f}-{ci["recall"][1]:.3f}), nested per fold '
            f'{s["recall"]["mean"]:.3f} ± {s["recall"]["std"]:.3f}, specificity '
            f'{point["pooled_oof"]["specificity"]:.3f}, F1 {point["pooled_oof"]["f1"]:.3f}'
        )
    return card.operating_points
