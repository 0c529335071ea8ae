"""A training run: data -> grouped folds -> cached features -> recipe per fold -> ONNX + card.

The release model is the model of fold `split.holdout_fold`: it never saw that fold's lesions,
which become the held-out test set (heldout.csv) for variant evaluation and bag replay.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from skin_screening.core.metrics import (
    binary_report,
    choose_threshold,
    coverage_curve,
    error_detection_auroc,
    expected_calibration_error,
    fit_calibration,
    mean_std,
)
from skin_screening.core.model_card import ModelCard
from skin_screening.core.postprocess import (
    UNCERTAINTY_SCORES,
    DecisionRule,
    Scores,
    per_frame,
    score,
    sigmoid,
)

from .choosing import record
from .config import RunConfig, set_seeds
from .data import LabelledSet, fold_fit_val, grouped_folds, load_dataset, mapping_name
from .distill import save_fold_logits
from .explain import gradcam_agreement
from .export import export_verified
from .features import training_activations
from .model import TrainingError, build_model
from .prune import sparsity
from .recipe import History, predict_views, train_cached

VALIDATION_CHOOSES = 'early stopping, calibration, threshold and referral bound of each fold'
REPORTED_COVERAGE = 0.8  # uncertainty evaluation: F1 of the 80 % least uncertain frames


def make_run_dir(out_dir: str | Path, name: str) -> Path:
    """A new run directory; never reuses an earlier one."""
    stamp = datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    path = Path(out_dir) / f'{name}-{stamp}'
    path.mkdir(parents=True, exist_ok=False)
    return path


def write_split(path: Path, data: LabelledSet, fold: np.ndarray) -> None:
    with path.open('w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['path', 'label', 'y', 'group', 'fold', 'domain'])
        rows = zip(data.paths, data.labels, data.y, data.groups, fold, data.domains)
        for p, lab, y, g, k, d in rows:
            writer.writerow([str(p), lab, int(y), g, int(k), d])


def calibrate_and_score(cfg, y_val, val_logits, y_test, test_logits) -> dict:
    """Calibration, threshold and referral bound from inner validation; metrics on the fold.

    Logits are (N * tta_views) x K, a frame's views adjacent (see postprocess.score).
    """
    views = cfg.train.tta_views
    temperature, bias = fit_calibration(y_val, per_frame(val_logits, views))
    rule = DecisionRule(temperature=temperature, bias=bias, views=views)
    p_val = score(val_logits, rule).probability
    threshold = choose_threshold(
        y_val, p_val, cfg.train.threshold_policy, cfg.train.min_sensitivity
    )
    rule = replace(rule, threshold=threshold, referral_score=cfg.train.referral_score)
    val, test = score(val_logits, rule), score(test_logits, rule)
    p_test = test.probability
    sens_thr = choose_threshold(y_val, p_val, 'min_sensitivity', cfg.train.min_sensitivity)
    oracle = choose_threshold(y_test, p_test, 'max_f1')
    coverage = cfg.train.referral_coverage
    bound = referral_bound(val, coverage, rule.referral_score) if coverage < 1 else None
    uncalibrated = sigmoid(per_frame(test_logits, views)).mean(1)
    return {
        'rule': replace(rule, referral_threshold=bound).to_dict(),
        'temperature': temperature,
        'bias': bias,
        'threshold': threshold,
        'ece_uncalibrated': expected_calibration_error(y_test, uncalibrated),
        'at_threshold': binary_report(y_test, p_test, threshold),
        'at_sensitivity_threshold': binary_report(y_test, p_test, sens_thr),
        'at_max_f1_on_fold': binary_report(y_test, p_test, oracle),
        'uncertainty': uncertainty_report(val, y_test, test, rule, REPORTED_COVERAGE),
    }


DOMAIN_REPORTS = ('at_threshold', 'at_sensitivity_threshold')


def score_domains(cfg, data: LabelledSet, val, val_logits, test, test_logits) -> dict:
    """calibrate_and_score on the primary domain (the first dataset: figures comparable with a
    run on it alone) and, with several domains, on each domain with its own calibration and
    threshold (result['domains'])."""
    views = cfg.train.tta_views

    def part(index, logits, domain):
        mine = data.domains[index] == domain
        return index[mine], logits[np.repeat(mine, views)]

    names = data.domain_names
    per_domain = {}
    for domain in names:
        (v, vz), (t, tz) = part(val, val_logits, domain), part(test, test_logits, domain)
        per_domain[domain] = calibrate_and_score(cfg, data.y[v], vz, data.y[t], tz) | {
            'n_val': len(v),
            'n_test': len(t),
        }
    result = per_domain[names[0]]
    if len(names) > 1:
        keep = ('rule', 'temperature', 'bias', 'threshold', 'n_val', 'n_test', *DOMAIN_REPORTS)
        result['domains'] = {d: {k: r[k] for k in keep} for d, r in per_domain.items()}
    return result


def referral_bound(scores: Scores, coverage: float, name: str) -> float:
    """The uncertainty above which the (1 - coverage) most uncertain frames are referred."""
    return float(np.quantile(scores.uncertainty(name), coverage))


def uncertainty_report(val: Scores, y_test, test: Scores, rule: DecisionRule, coverage) -> dict:
    """Per uncertainty score: error-detection AUROC, and F1 of the frames kept at `coverage`
    (bound chosen on validation) vs all frames. Unsuffixed keys are the rule's referral score."""
    decision = test.probability >= rule.threshold
    report = {
        'referral_score': rule.referral_score,
        'coverage_target': coverage,
        'f1_all': binary_report(y_test, test.probability, rule.threshold)['f1'],
        'curves': {},
    }
    for name in UNCERTAINTY_SCORES:
        u = test.uncertainty(name)
        report[f'error_auroc_{name}'] = error_detection_auroc(y_test, decision, u)
        if not np.all(np.isfinite(u)):  # epistemic with one head
            continue
        kept = u <= referral_bound(val, coverage, name)
        kept_report = binary_report(y_test[kept], test.probability[kept], rule.threshold)
        report[f'coverage_{name}'] = float(kept.mean())
        report[f'f1_kept_{name}'] = kept_report['f1']
        report[f'recall_kept_{name}'] = kept_report['recall']
        report['curves'][name] = coverage_curve(y_test, test.probability, u, rule.threshold)
    name = rule.referral_score
    return report | {
        'referral_threshold': referral_bound(val, coverage, name),
        'coverage': report[f'coverage_{name}'],
        'f1_kept': report[f'f1_kept_{name}'],
        'recall_kept': report[f'recall_kept_{name}'],
        'curve': report['curves'][name],
    }


def run_training(cfg: RunConfig) -> Path:
    start = time.time()
    set_seeds(cfg.seed)
    data = load_dataset(cfg.data)  # bad data stops here, before a run folder exists
    run_dir = make_run_dir(cfg.out_dir, cfg.name)
    cfg.save(run_dir / 'config.yaml')
    spec = cfg.model.preprocessing()
    if cfg.train.recipe == 'cached':
        model = build_model(cfg.model)
        # into memory: random views per sample each step
        acts, data = training_activations(data, model.front, spec, cfg)
        initial = model.top.get_weights()
    elif cfg.train.recipe == 'full':
        from .data import read_images

        _, data, _ = read_images(data, cfg.data.bad_images)  # report/skip unreadable images
        model = acts = None
    else:
        raise TrainingError(f'unknown recipe {cfg.train.recipe!r} (cached, full)')
    fold = grouped_folds(data, cfg.split, cfg.seed)
    write_split(run_dir / 'split.csv', data, fold)
    mix = None
    if cfg.train.mix_runs:
        from .mix import mix_folds

        mix = mix_folds(cfg, model.top, acts, data, fold, run_dir / 'split.csv')
    folds, release, fold_logits, chose = [], None, {}, {}
    for k in cfg.split.trained_folds():
        print(f'fold {k + 1}/{cfg.split.folds}')
        test = np.nonzero(fold == k)[0]
        fit, val = fold_fit_val(data, fold, k, cfg.split.inner_val_fraction, cfg.seed)
        chose[k] = [data.ids[i] for i in val]
        if mix is not None:
            model.top.set_weights(mix.weights(k))
            history = History(best={'phase': 'mix', 'lambda': mix.chosen[k]})
        elif acts is not None:
            model.top.set_weights(initial)
            history = train_cached(
                model, acts, data.y, fit, val, cfg.train, cfg.seed + k, data.domains
            )
        if acts is not None:
            model.top.save_weights(run_dir / f'fold{k}.top.weights.h5')  # per-fold variants
            val_logits = predict_views(model.top, acts, val, cfg.train.tta_views)
            test_logits = predict_views(model.top, acts, test, cfg.train.tta_views)
            every = predict_views(model.top, acts, np.arange(len(data)), cfg.train.tta_views)
            fold_logits[k] = per_frame(every, cfg.train.tta_views).mean(axis=1)  # for students
        else:
            from .distill import teacher_logits
            from .full import predict_images, train_full

            teacher = None
            if cfg.train.teacher_run:
                teacher = teacher_logits(cfg.train.teacher_run, data, fold, k)
            model, history = train_full(cfg, data, fit, val, cfg.seed + k, teacher)
            val_logits = predict_images(model, data, val, cfg)
            test_logits = predict_images(model, data, test, cfg)
        result = score_domains(cfg, data, val, val_logits, test, test_logits)
        if cfg.train.prune_sparsity:
            result['sparsity'] = sparsity(model.top, model.full)
        result |= {'fold': k, 'n_fit': len(fit), 'n_val': len(val), 'best': history.best}
        if history.pretrained:
            result['pretrained'] = history.pretrained
        folds.append(result)
        if k == cfg.split.holdout_fold and cfg.export.release:
            release = export_release(cfg, model, data, test, spec, result, run_dir)
    if not folds:
        raise TrainingError(f'no fold trained: only_folds {cfg.split.only_folds}')
    if fold_logits:
        save_fold_logits(run_dir, data, fold, fold_logits)
    record(run_dir, 'fold-validation', VALIDATION_CHOOSES, chose)
    if mix is not None:
        record(run_dir, 'mix', 'mix weight l of each fold model', mix.chosen_on)
    summary = {
        key: mean_std([f[key] for f in folds])
        for key in ('at_threshold', 'at_sensitivity_threshold', 'at_max_f1_on_fold', 'uncertainty')
    }
    summary['ece_uncalibrated'] = mean_std([{'ece': f['ece_uncalibrated']} for f in folds])['ece']
    if 'domains' in folds[0]:
        summary['domains'] = {
            d: {key: mean_std([f['domains'][d][key] for f in folds]) for key in DOMAIN_REPORTS}
            for d in folds[0]['domains']
        }
    metrics = {
        'cv_folds': folds,
        'cv_summary': summary,
        'wall_time_s': round(time.time() - start, 1),
    }
    if mix is not None:
        metrics['mix'] = mix.report(cfg.split.holdout_fold)
    if release is not None:
        card = ModelCard.load(run_dir)
        holdout = next(f for f in folds if f['fold'] == cfg.split.holdout_fold)
        metrics['holdout'] = holdout
        card.metrics = {'cv_folds': folds, 'cv_summary': summary, 'holdout': holdout}
        card.training['wall_time_s'] = metrics['wall_time_s']
        if mix is not None:
            card.training['mix'] = metrics['mix']
        card.save(run_dir)
    else:  # a CV-only run (export.release false, or only_folds without the holdout fold)
        print(f'no release model (holdout fold {cfg.split.holdout_fold}): CV figures only')
    (run_dir / 'metrics.json').write_text(json.dumps(metrics, indent=2))
    print(f'run written to {run_dir} in {time.time() - start:.0f} s')
    return run_dir


def domain_counts(data: LabelledSet) -> dict:
    """Per imaging domain: images, cancers and groups (lesions or patients)."""
    out = {}
    for domain in data.domain_names:
        mine = data.domains == domain
        out[domain] = {
            'images': int(mine.sum()),
            'positives': int(data.y[mine].sum()),
            'groups': int(len(np.unique(data.groups[mine]))),
        }
    return out


def describe(model) -> str:
    if model.architecture == 'mobilenet_v2':
        return f'mobilenet_v2 alpha={model.alpha}'
    return (
        f'{model.architecture} widths={list(model.widths)} '
        f'convs_per_block={model.convs_per_block} dense={model.dense}'
    )


def export_release(cfg, model, data, test, spec, result, run_dir: Path) -> Path:
    """ONNX of the hold-out fold's model (verified against Keras), its card and test list."""
    from skin_screening.core.preprocess import load_rgb, prepare

    check = [prepare(load_rgb(data.paths[i]), spec) for i in test[: cfg.export.check_images]]
    onnx_path = run_dir / 'model.fp32.onnx'
    diff = export_verified(
        model.full,
        onnx_path,
        np.stack(check),
        spec.input_size,
        cfg.export.opset,
        cfg.export.tolerance,
        cfg.model.cut_layer if cfg.model.architecture == 'mobilenet_v2' else None,
    )
    explanation = gradcam_agreement(model.full, onnx_path, np.stack(check))
    print(f'CAM vs Keras Grad-CAM on {len(check)} held-out images: {explanation}')
    write_split(
        run_dir / 'heldout.csv', data.subset(test), np.full(len(test), cfg.split.holdout_fold)
    )
    card = ModelCard(
        name=cfg.name,
        architecture=describe(cfg.model),
        preprocessing=spec,
        decision=DecisionRule.from_dict(result['rule']),
        heads=cfg.model.heads,
        data={
            'format': cfg.data.format,
            'root': cfg.data.root,
            'mapping': mapping_name(cfg.data),
            'domains': domain_counts(data),
            'images': len(data),
            'positives': int(data.y.sum()),
            'groups': int(len(np.unique(data.groups))),
            'split_file': 'split.csv',
            'heldout_file': 'heldout.csv',
            'heldout_fold': cfg.split.holdout_fold,
            'heldout_images': len(test),
        },
        training={
            'config': cfg.to_dict(),
            'seed': cfg.seed,
            'weights': model.weights_source,
            'parameters': int(model.full.count_params()),
        },
        metrics={},
    )
    card.add_file(onnx_path, precision='fp32', max_abs_diff_vs_keras=diff)
    card.training['cam_vs_gradcam'] = explanation
    for name in ('split.csv', 'heldout.csv', 'config.yaml'):
        card.add_file(run_dir / name)
    card.save(run_dir)
    return onnx_path
