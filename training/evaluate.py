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
from skin_screening.core.precision import parse_backend, parse_precision
from skin_screening.core.preprocess import load_rgb, prepare_batch

from .complexity import parameter_count

K = TypeVar('K', bound=Hashable)


def load_labelled_csv(path: Path, limit: int | None = None) -> tuple[list[Path], np.ndarray]:
    rows = list(csv.DictReader(Path(path).open()))
    if not rows or not {'path', 'y'} <= set(rows[0]):
        raise ValueError(f'{path} needs columns path and y (1 = skin cancer)')
    rows = rows[:limit] if limit else rows
    return [Path(r['path']) for r in rows], np.array([int(r['y']) for r in rows])


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


def engine_call(clf: Classifier, batch: np.ndarray, size: int) -> Callable[[], float]:
    """A warmed-up timed engine call of batch `size` (rows of `batch`, repeated to fill)."""
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


def evaluate_one(clf: Classifier, images: np.ndarray, y: np.ndarray) -> dict:
    """Screening metrics of one variant. images: (N * views) preprocessed rows, a frame's
    test-time views adjacent."""
    from skin_screening.core.postprocess import score

    step = 32 * clf.rule.views
    logits = np.concatenate(
        [clf.logits(images[s : s + step])[0] for s in range(0, len(images), step)]
    )
    scores = score(logits, clf.rule)
    report = binary_report(y, scores.probability, clf.rule.threshold)
    return {
        'precision': clf.precision.value,
        'backend': clf.backend.value,
        'file': clf.engine.path.name,
        'size_mb': clf.engine.path.stat().st_size / 1e6,
        'ppv': report['precision'],  # 'precision' names the numeric precision here
        **{k: report[k] for k in ('f1', 'recall', 'specificity', 'roc_auc', 'accuracy')},
        '_decision': scores.decision,
        '_probability': scores.probability,
    }


def time_variants(clfs: list[Classifier], images: np.ndarray, repeats: int) -> list[dict]:
    """Latency columns of each variant: calls of 1 and 8 frames (with all their views),
    interleaved across the variants."""
    views = [clf.rule.views for clf in clfs]
    one = {i: engine_call(clf, images[:v], v) for i, (clf, v) in enumerate(zip(clfs, views))}
    eight = {
        i: engine_call(clf, images[: 8 * v], 8 * v) for i, (clf, v) in enumerate(zip(clfs, views))
    }
    b1 = interleaved_ms(one, max(2, repeats // 10), block=10)
    b8 = interleaved_ms(eight, max(2, repeats // 40), block=10, settle=3)
    return [latency_columns(b1[i], b8[i]) for i in range(len(clfs))]


def evaluate_variants(
    model_dir: str | Path,
    images_csv: str | Path | None = None,
    precisions=('fp32', 'fp16', 'int8'),
    backends=('onnxruntime',),
    limit: int | None = None,
    threads: int | None = None,
    repeats: int = 50,
    out: str | Path | None = None,
) -> list[dict]:
    model_dir = Path(model_dir)
    card = ModelCard.load(model_dir)
    csv_path = Path(images_csv or model_dir / card.data.get('heldout_file', 'heldout.csv'))
    paths, y = load_labelled_csv(csv_path, limit)
    images = prepare_batch([load_rgb(p) for p in paths], card.preprocessing, card.decision.views)
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
                row = evaluate_one(clf, images, y)
                rows.append(row | {'parameters': params, 'images': len(y)})
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
    public = [{k: v for k, v in r.items() if not k.startswith('_')} for r in rows]
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / 'variants.json').write_text(json.dumps(public, indent=2))
        with (out / 'variants.csv').open('w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(public[0]))
            writer.writeheader()
            writer.writerows(public)
    return public


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
