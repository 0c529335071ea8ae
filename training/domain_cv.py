"""Per-domain cross-validation figures of a training run (the acceptance figures of issue 22).

    python -m training domain-cv RUN [--baseline RUN] [--int8]

From the run's own fold models (fold_logits.npz, each fold's per-domain calibration):
1. ROC-AUC per domain and fold, and, with --baseline (a run on the primary domain alone, same
   seed, so the same primary-domain folds), the paired per-fold difference on the primary domain.
2. The screening point as a user of the procedure gets it: for each fold, the screening
   threshold (recall >= 0.90 on all cancers and on melanomas) chosen on the pooled out-of-fold
   predictions of the OTHER folds of the domain,
   applied to this fold; recall, specificity and melanoma recall pooled over the folds with
   95 % bootstrap intervals drawn by group (patient for the clinical photographs).
3. --int8: every fold model exported, quantized (INT8 Q/DQ, the shipped recipe) and calibrated
   per domain through each engine on the fold's validation images, as a release model is; the
   paired recall difference INT8 - FP32 on every fold's test images at the same thresholds.
Written to RUN/domain_cv.json, into the run's model card (metrics.domain_cv; `release` carries it
to the model folder) and printed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from skin_screening.core.model_card import ModelCard
from skin_screening.core.operating_points import paired_recall_difference, point_figures
from skin_screening.core.postprocess import sigmoid
from skin_screening.core.preprocess import load_rgb, prepare_batch

from .data import DataError, split_set
from .operating_points import fold_scores, melanoma, screening_threshold

RESULT_FILE = 'domain_cv.json'


def fold_predictions(run: Path) -> dict:
    """Every image scored by the fold model that did not train on it, calibrated for its
    domain by that fold -> {'data', 'fold', 'logit', 'probability'}."""
    data, fold = split_set(run)
    logit, probability = fold_scores(run, data, fold)
    return {'data': data, 'fold': fold, 'logit': logit, 'probability': probability}


def fold_aucs(y, score, fold) -> list[float]:
    from sklearn.metrics import roc_auc_score

    return [float(roc_auc_score(y[fold == k], score[fold == k])) for k in np.unique(fold)]


def other_fold_thresholds(y, p, fold, mel=None) -> np.ndarray:
    """Per image: the screening threshold (with `mel`: the melanoma point's) chosen without its
    fold (pooled other folds)."""
    out = np.zeros(len(y))
    for k in np.unique(fold):
        rest = fold != k
        out[fold == k] = screening_threshold(y[rest], p[rest], None if mel is None else mel[rest])
    return out


def screening_figures(y, p, threshold, groups, mel) -> dict:
    """Figures of per-image thresholds (as margins above them), melanoma separately."""
    margin = p - threshold
    out = point_figures(y, margin, 0.0, groups)
    if mel.any():
        out['melanoma'] = point_figures(y[mel], margin[mel], 0.0, list(np.asarray(groups)[mel]))
    return out


def domain_report(pred: dict, baseline: dict | None) -> dict:
    data, fold = pred['data'], pred['fold']
    report = {}
    for domain in data.domain_names:
        m = data.domains == domain
        y, p, f, z = data.y[m], pred['probability'][m], fold[m], pred['logit'][m]
        aucs = fold_aucs(y, z, f)
        mel = melanoma(np.asarray(data.labels)[m])
        threshold = other_fold_thresholds(y, p, f)
        groups = list(data.groups[m])
        report[domain] = {
            'images': int(m.sum()),
            'positives': int(y.sum()),
            'groups': len(set(groups)),
            'roc_auc_folds': aucs,
            'roc_auc': {'mean': float(np.mean(aucs)), 'std': float(np.std(aucs))},
            'screening': screening_figures(y, p, threshold, groups, mel),
            'screening_thresholds': sorted({float(t) for t in threshold}),
        }
        if mel.any():
            safe = other_fold_thresholds(y, p, f, mel)
            report[domain]['melanoma_point'] = screening_figures(y, p, safe, groups, mel)
        if baseline is not None and domain == baseline['data'].domain_names[0]:
            b = baseline['data']
            mine = {i: j for j, i in enumerate(b.ids)}
            index = np.array([mine[i] for i in np.asarray(data.ids)[m]])
            if not np.array_equal(baseline['fold'][index], f):
                raise DataError(f'the baseline run split {domain} into other folds')
            base = fold_aucs(b.y[index], baseline['logit'][index], f)
            report[domain]['baseline_roc_auc_folds'] = base
            report[domain]['roc_auc_change'] = float(np.mean(aucs) - np.mean(base))
    return report


def int8_report(run: Path, pred: dict) -> dict:
    """INT8 vs FP32 of every fold model on its own test images, per domain, at the
    other-fold screening thresholds (FP32 probabilities of the fold's ONNX model)."""
    data, fold = pred['data'], pred['fold']
    caught = {'fp32': np.zeros(len(data), bool), 'int8': np.zeros(len(data), bool)}
    threshold = np.zeros(len(data))
    for domain in data.domain_names:
        m = data.domains == domain
        threshold[m] = other_fold_thresholds(data.y[m], pred['probability'][m], fold[m])
    with tempfile.TemporaryDirectory() as tmp:
        for k in np.unique(fold):
            model_dir = fold_model(run, int(k), Path(tmp) / f'fold{k}')
            for name, probability in fold_probabilities(model_dir, data, fold == k).items():
                test = np.nonzero(fold == k)[0]
                caught[name][test] = probability >= threshold[test]
            shutil.rmtree(model_dir)
    out = {}
    for domain in data.domain_names:
        m = data.domains == domain
        out[domain] = paired_recall_difference(
            data.y[m], caught['int8'][m], caught['fp32'][m], list(data.groups[m])
        ) | {
            'recall_fp32': float(caught['fp32'][m][data.y[m] == 1].mean()),
            'recall_int8': float(caught['int8'][m][data.y[m] == 1].mean()),
        }
    return out


def fold_model(run: Path, k: int, out: Path) -> Path:
    """Fold k's model as a model folder (its held-out fold = k): ONNX, card, INT8 variant."""
    from .config import load_config
    from .export import export_verified
    from .model import build_model
    from .train import describe
    from .variants import VariantConfig, build_variants

    cfg = load_config(run / 'config.yaml')
    release = ModelCard.load(run)
    model = build_model(cfg.model)
    model.top.load_weights(run / f'fold{k}.top.weights.h5')
    out.mkdir(parents=True)
    shutil.copy(run / 'split.csv', out / 'split.csv')
    data, fold = split_set(run)
    check = [load_rgb(p) for p in np.asarray(data.paths)[fold == k][: cfg.export.check_images]]
    spec = cfg.model.preprocessing()
    onnx_path = out / 'model.fp32.onnx'
    export_verified(
        model.full,
        onnx_path,
        prepare_batch(check, spec),
        spec.input_size,
        cfg.export.opset,
        cfg.export.tolerance,
        cfg.model.cut_layer,
    )
    card = ModelCard(
        name=f'{cfg.name}-fold{k}',
        architecture=describe(cfg.model),
        preprocessing=spec,
        decision=release.decision,
        data={'split_file': 'split.csv', 'heldout_fold': k},
        training={'config': cfg.to_dict(), 'seed': cfg.seed},
    )
    card.add_file(onnx_path, precision='fp32')
    card.add_file(out / 'split.csv')
    card.save(out)
    build_variants(out, VariantConfig(precisions=('int8',)))
    return out


def fold_probabilities(model_dir: Path, data, test: np.ndarray) -> dict[str, np.ndarray]:
    """-> precision -> calibrated probability of the test images (each file calibrated per
    domain on the fold's validation images through its own engine)."""
    from .data import release_validation
    from .operating_points import calibrate_variants, variant_logits

    calibration = calibrate_variants(model_dir, release_validation(model_dir))
    card = ModelCard.load(model_dir)
    index = np.nonzero(test)[0]
    images = prepare_batch([load_rgb(data.paths[i]) for i in index], card.preprocessing)
    out = {}
    for file_name, info in card.files.items():
        if 'precision' not in info:
            continue
        logits, _ = variant_logits(model_dir, file_name, images)
        z = logits.mean(axis=1)
        cal = calibration[file_name]
        p = np.zeros(len(index))
        for domain in set(data.domains[index]):
            m = data.domains[index] == domain
            own = cal if domain == cal['domain'] else cal['domains'][domain]
            p[m] = sigmoid(z[m] / own['temperature'] + own['bias'])
        out[info['precision']] = p
    return out


def run_domain_cv(run: str | Path, baseline: str | Path | None = None, int8: bool = False):
    run = Path(run)
    pred = fold_predictions(run)
    base = fold_predictions(Path(baseline)) if baseline else None
    result = {'run': run.name, 'baseline': Path(baseline).name if baseline else None}
    result['domains'] = domain_report(pred, base)
    if int8:
        result['int8_vs_fp32'] = int8_report(run, pred)
    (run / RESULT_FILE).write_text(json.dumps(result, indent=2))
    if (run / 'model_card.json').is_file():  # the release model's card carries them (release)
        card = ModelCard.load(run)
        card.metrics['domain_cv'] = result
        card.save(run)
    print_report(result)
    return result


def _ci(figures: dict, key: str) -> str:
    low, high = figures[f'{key}_ci']
    return f'{figures[key]:.3f} [{low:.3f}, {high:.3f}]'


def print_report(result: dict) -> None:
    for domain, r in result['domains'].items():
        s = r['screening']
        print(
            f'{domain}: {r["images"]} images, {r["positives"]} cancers, {r["groups"]} groups; '
            f'ROC-AUC {r["roc_auc"]["mean"]:.3f} ± {r["roc_auc"]["std"]:.3f} '
            f'(folds {", ".join(f"{a:.3f}" for a in r["roc_auc_folds"])})'
        )
        if 'roc_auc_change' in r:
            print(
                f'  vs baseline folds {", ".join(f"{a:.3f}" for a in r["baseline_roc_auc_folds"])}'
                f': change {r["roc_auc_change"]:+.4f}'
            )
        mel = f', melanoma {_ci(s["melanoma"], "recall")}' if 'melanoma' in s else ''
        print(
            f'  screening (threshold from the other folds): recall {_ci(s, "recall")}, '
            f'specificity {_ci(s, "specificity")}{mel}'
        )
        if 'melanoma_point' in r:
            s = r['melanoma_point']
            print(
                f'  melanoma point (same): recall {_ci(s, "recall")}, specificity '
                f'{_ci(s, "specificity")}, melanoma {_ci(s["melanoma"], "recall")}'
            )
    for domain, d in result.get('int8_vs_fp32', {}).items():
        print(
            f'{domain} INT8 - FP32 recall {d["difference"]:+.3f} [{d["ci"][0]:+.3f}, '
            f'{d["ci"][1]:+.3f}] (FP32 only {d["only_b"]}, INT8 only {d["only_a"]}; recall '
            f'{d["recall_fp32"]:.3f} / {d["recall_int8"]:.3f})'
        )
