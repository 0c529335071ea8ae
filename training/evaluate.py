"""Every variant on the same held-out images through the same Classifier interface.

Per precision x backend: file size (and ratio to FP32), parameter count, latency (median, p90)
at batch 1 and 8 (timed round by round across the variants, so host noise hits all alike),
throughput, screening metrics at the model card's threshold, and agreement of
decisions with FP32.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import TypeVar

import numpy as np
from skin_screening.core.classifier import Classifier
from skin_screening.core.engines import EngineError, variant_path
from skin_screening.core.metrics import binary_report
from skin_screening.core.model_card import ModelCard
from skin_screening.core.operating_points import domain_default, domain_points, precision_table
from skin_screening.core.postprocess import UNASSESSABLE
from skin_screening.core.precision import parse_backend, parse_precision
from skin_screening.core.preprocess import crops_batch, load_rgb, resize

from .complexity import parameter_count
from .data import DERMOSCOPIC

K = TypeVar('K', bound=Hashable)


def load_labelled_csv(path: Path, limit: int | None = None):
    """-> (paths, y, groups, labels, domains) of a CSV with columns path, y[, group, label,
    domain] (no group: one per image; no domain: dermoscopic)."""
    rows = list(csv.DictReader(Path(path).open()))
    if not rows or not {'path', 'y'} <= set(rows[0]):
        raise ValueError(f'{path} needs columns path and y (1 = skin cancer)')
    rows = rows[:limit] if limit else rows
    paths = [Path(r['path']) for r in rows]
    groups = [r.get('group') or p.stem for r, p in zip(rows, paths)]
    labels = [r.get('label', '') for r in rows]
    domains = np.array([r.get('domain') or DERMOSCOPIC for r in rows])
    return paths, np.array([int(r['y']) for r in rows]), groups, labels, domains


def interleaved_ms(
    calls: Mapping[K, Callable[[], float]], rounds: int, block: int = 20, settle: int = 10
) -> dict[K, list[float]]:
    """Milliseconds of every call, `block` per round. A round runs each call `settle` + `block`
    times in a row, starting one call further along than the round before, so a noisy host slows
    all of them alike. The first `settle` calls after a switch are not kept: measured here, an
    ONNX Runtime session's first ~10 calls after another session ran are up to 3x slower."""
    keys = list(calls)
    times: dict[K, list[float]] = {k: [] for k in keys}
    for r in range(rounds):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            for _ in range(settle):
                calls[key]()
            times[key].extend(calls[key]() for _ in range(block))
    return times


def engine_call(clf: Classifier, crops: np.ndarray, size: int) -> Callable[[], float]:
    """A warmed-up timed engine call of batch `size` (rows of `crops` with their views,
    repeated to fill)."""
    batch = crops_batch(crops, clf.card.preprocessing, clf.rule.views)
    x = np.ascontiguousarray(np.resize(batch, (size, *batch.shape[1:])))
    clf.logits(x)
    return lambda: clf.logits(x)[1]


def latency_columns(b1: list[float], b8: list[float]) -> dict:
    return {
        'latency_b1_ms': statistics.median(b1),
        'latency_b1_p90_ms': float(np.percentile(b1, 90)),
        'latency_b8_ms': statistics.median(b8),
        'throughput_ips': 8000.0 / statistics.median(b8),
    }


def evaluate_one(clf: Classifier, crops: np.ndarray, y: np.ndarray) -> dict:
    """Screening metrics of one variant at its card's default operating point, on the frames its
    gate lets through (crops: the model's view of each frame, uint8)."""
    parts = [clf.classify_crops(crops[s : s + 32])[0] for s in range(0, len(crops), 32)]
    probability = np.concatenate([p.probability for p in parts])
    decision = np.concatenate([p.decision for p in parts])
    assessed = decision != UNASSESSABLE
    report = binary_report(y[assessed], probability[assessed], clf.rule.threshold)
    return {
        'precision': clf.precision.value,
        'backend': clf.backend.value,
        'file': clf.engine.path.name,
        'size_mb': clf.engine.path.stat().st_size / 1e6,
        'operating_point': clf.operating_point,
        'ppv': report['precision'],  # 'precision' names the numeric precision here
        **{k: report[k] for k in ('f1', 'recall', 'specificity', 'roc_auc', 'accuracy')},
        'unassessable': int((~assessed).sum()),
        '_decision': decision,
        '_probability': probability,
        '_assessed': assessed,
    }


def time_variants(clfs: list[Classifier], images: np.ndarray, repeats: int) -> list[dict]:
    """Latency columns of each variant: calls of 1 and 8 frames (with all their views),
    interleaved across the variants."""
    views = [clf.rule.views for clf in clfs]
    one = {i: engine_call(clf, images[:1], v) for i, (clf, v) in enumerate(zip(clfs, views))}
    eight = {i: engine_call(clf, images[:8], 8 * v) for i, (clf, v) in enumerate(zip(clfs, views))}
    b1 = interleaved_ms(one, max(2, repeats // 10), block=10)
    b8 = interleaved_ms(eight, max(2, repeats // 40), block=10, settle=3)
    return [latency_columns(b1[i], b8[i]) for i in range(len(clfs))]


def evaluate_variants(*args, **kwargs) -> list[dict]:
    """The per-variant rows of evaluate_all()."""
    return evaluate_all(*args, **kwargs)[0]


def evaluate_all(
    model_dir: str | Path,
    images_csv: str | Path | None = None,
    precisions=('fp32', 'fp16', 'int8'),
    backends=('onnxruntime',),
    limit: int | None = None,
    threads: int | None = None,
    repeats: int = 50,
    out: str | Path | None = None,
) -> tuple[list[dict], list[dict]]:
    """-> (one row per variant: size, latency, figures at the card's default operating point;
    one row per variant and operating point: figures with CIs, paired recall vs FP32)."""
    model_dir = Path(model_dir)
    card = ModelCard.load(model_dir)
    csv_path = Path(images_csv or model_dir / card.data.get('heldout_file', 'heldout.csv'))
    paths, y, groups, labels, domains = load_labelled_csv(csv_path, limit)
    images = np.stack([resize(load_rgb(p), card.preprocessing) for p in paths])
    ops = card.operating_points
    default_domain = ops.get('points', {}).get(ops.get('default'), {}).get('domain')
    # The per-variant rows: the images of the default point's domain (all, without domains)
    main = domains == default_domain if default_domain in set(domains) else np.ones(len(y), bool)
    params = parameter_count(model_dir / 'model.fp32.onnx')
    rows, clfs = [], []
    try:
        for backend in map(parse_backend, backends):
            for precision in map(parse_precision, precisions):
                if not variant_path(model_dir, precision, backend).is_file():
                    print(f'skipped {precision.value}/{backend.value}: variant not built')
                    continue
                try:
                    clf = Classifier(model_dir, precision, backend, threads=threads)
                except EngineError as exc:
                    print(f'skipped {precision.value}/{backend.value}: {exc}')
                    continue
                clfs.append(clf)
                row = evaluate_one(clf, images[main], y[main])
                rows.append(row | {'parameters': params, 'images': int(main.sum())})
        for row, latency in zip(rows, time_variants(clfs, images, repeats)):
            row |= latency
    finally:
        for clf in clfs:
            clf.close()
    reference = next((r for r in rows if r['precision'] == 'fp32'), None)
    for row in rows:
        if reference is not None:
            row['size_ratio'] = row['size_mb'] / reference['size_mb']
            row['latency_ratio'] = row['latency_b1_ms'] / reference['latency_b1_ms']
            row['delta_f1'] = row['f1'] - reference['f1']
            row['agreement'] = float(np.mean(row['_decision'] == reference['_decision']))
            row['max_abs_prob_diff'] = float(
                np.max(np.abs(row['_probability'] - reference['_probability']))
            )
    table = domain_tables(model_dir, rows, images, y, groups, labels, domains, main, threads)
    public = [{k: v for k, v in r.items() if not k.startswith('_')} for r in rows]
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / 'variants.json').write_text(json.dumps(public, indent=2))
        with (out / 'variants.csv').open('w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(public[0]))
            writer.writeheader()
            writer.writerows(public)
        (out / 'operating_points.json').write_text(json.dumps(table, indent=2))
    return public, table


def domain_tables(model_dir: Path, rows, images, y, groups, labels, domains, main, threads):
    """Per imaging domain of the images, every variant at every operating point of that domain
    (probabilities calibrated for it, through each variant's own engine), with grouped-
    bootstrap CIs and the paired recall difference to FP32; rows tagged with the domain."""
    card = ModelCard.load(model_dir)
    ops = card.operating_points
    table = []
    for domain in dict.fromkeys(domains.tolist()):
        points = domain_points(ops, domain)
        start = domain_default(ops, domain)
        if not points or start is None:
            continue
        mine = domains == domain
        results = {}
        for r in rows:
            part = r  # the per-variant rows: this domain's images at this point already
            if r['operating_point'] != start or not np.array_equal(mine, main):
                clf = Classifier(
                    model_dir, r['precision'], r['backend'], threads=threads, operating_point=start
                )
                try:
                    part = evaluate_one(clf, images[mine], y[mine])
                finally:
                    clf.close()
            results[f'{r["precision"]}/{r["backend"]}'] = {
                'y': y[mine],
                'probability': part['_probability'],
                'assessed': part['_assessed'],
                'groups': list(np.asarray(groups)[mine]),
                'key': list(range(int(mine.sum()))),
                'labels': list(np.asarray(labels)[mine]),
            }
        reference = next((k for k in results if k.startswith('fp32/')), 'fp32')
        thresholds = {name: point['threshold'] for name, point in points.items()}
        table += [
            row | {'domain': domain} for row in precision_table(results, thresholds, reference)
        ]
    return table


def print_points(table: list[dict]) -> None:
    """Per precision and operating point: figures with 95 % CIs, and recall against FP32."""
    print(
        f'\n{"variant":<18} {"point":<19} {"thr":>6} {"recall [95% CI]":>22} '
        f'{"specificity [CI]":>22} {"F1 [CI]":>22} {"unass.":>6} {"melanoma":>18}  '
        'recall - FP32 [CI] (only/only)'
    )
    for r in table:
        cells = [
            f'{r[k]:.3f} [{r[k + "_ci"][0]:.3f}, {r[k + "_ci"][1]:.3f}]'
            for k in ('recall', 'specificity', 'f1')
        ]
        paired = next((v for k, v in r.items() if k.startswith('recall_vs_')), None)
        diff = (
            f'{paired["difference"]:+.3f} [{paired["ci"][0]:+.3f}, {paired["ci"][1]:+.3f}] '
            f'({paired["only_b"]}/{paired["only_a"]})'
            if paired
            else ''
        )
        mel = r.get('melanoma')
        mel = (
            f'{mel["recall"]:.2f} [{mel["recall_ci"][0]:.2f}, {mel["recall_ci"][1]:.2f}]'
            if mel
            else '-'
        )
        print(
            f'{r["precision"]:<18} {r["operating_point"]:<19} {r["threshold"]:>6.3f} '
            f'{cells[0]:>22} {cells[1]:>22} {cells[2]:>22} {r["unassessable"]:>6} {mel:>18}  '
            f'{diff}'
        )
    print(
        'only/only: cancers caught by FP32 only / by this variant only (same frames); '
        'melanoma: recall of the melanomas alone'
    )


def print_table(rows: list[dict]) -> None:
    head = (
        f'{"precision":<9} {"backend":<11} {"MB":>6} {"×FP32":>6} {"b1 ms":>7} {"p90":>6} '
        f'{"b8 ms":>7} {"img/s":>7} {"F1":>6} {"ΔF1":>6} {"AUC":>6} {"agree":>6}'
    )
    print(head)
    for r in rows:
        print(
            f'{r["precision"]:<9} {r["backend"]:<11} {r["size_mb"]:>6.2f} '
            f'{r.get("size_ratio", float("nan")):>6.2f} {r["latency_b1_ms"]:>7.2f} '
            f'{r["latency_b1_p90_ms"]:>6.2f} {r["latency_b8_ms"]:>7.2f} '
            f'{r["throughput_ips"]:>7.0f} {r["f1"]:>6.3f} {r.get("delta_f1", 0):>+6.3f} '
            f'{r["roc_auc"]:>6.3f} {r.get("agreement", float("nan")):>6.3f}'
        )
