"""What the main job (run.py) scores: labelled frames of a dataset, the model's operating point
for the data's imaging domain, the engine without ROS, and the per-point table of a replay."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from skin_screening.core.bags import BagError, LabelledFrame, decoded_frames, ground_truth
from skin_screening.core.classifier import Classifier
from skin_screening.core.metrics import binary_report
from skin_screening.core.model_card import ModelCard
from skin_screening.core.operating_points import domain_default, domain_points, precision_table
from skin_screening.core.postprocess import UNASSESSABLE

from .config import DataConfig
from .data import DERMOSCOPIC, FORMAT_DOMAINS, load_dataset, read_images, training_fold_rows


def evaluation_frames(args, card_dir: Path):
    """Labelled frames of the dataset (held-out lesions only when asked or when known)."""
    data = load_dataset(
        DataConfig(
            format=args.format,
            root=str(args.data),
            csv=str(args.data / 'labels.csv') if args.format == 'csv' else None,
            mapping=args.mapping or '',  # '' = the format's own
        )
    )
    trained = training_groups(card_dir)
    if args.heldout_only or trained:
        keep = np.array([g not in trained for g in data.groups])
        if not keep.all() and not args.heldout_only:
            raise SystemExit(
                f'error: {int((~keep).sum())} images of {args.data} show lesions '
                f'the model was trained on; pass --heldout-only to drop them'
            )
        data = data.subset(np.nonzero(keep)[0])
    if args.limit:
        data = data.subset(np.arange(min(args.limit, len(data))))
    images, data, _ = read_images(data)
    return [
        LabelledFrame(im, int(y), lab, i, str(g))
        for im, y, lab, i, g in zip(images, data.y, data.labels, data.ids, data.groups)
    ]


def training_groups(model_dir: Path) -> set[str]:
    """Lesion ids the model was trained on (from its split.csv), empty when unknown."""
    return {row['group'] for row in training_fold_rows(model_dir) or []}


def data_domain(args) -> str:
    return FORMAT_DOMAINS.get(args.format, DERMOSCOPIC)


def choose_point(args) -> str | None:
    """--operating-point, or the card's point for the data's domain (None: the card's default,
    a card without points for that domain)."""
    card = ModelCard.load(args.model_dir)
    if args.operating_point:
        card.rule('model.fp32.onnx', args.operating_point)  # an unknown name: one clear error
        return args.operating_point
    return domain_default(card.operating_points, data_domain(args))


def scoring_truth(info, truth: dict | None) -> tuple[dict | None, list[str]]:
    """The ground truth to score a bag with (`truth` from --labels, else the bag's own; None
    for an unlabelled bag) and what could not be read of it (printed and counted as a loss)."""
    problems: list[str] = []
    if truth is None and info.labelled:
        try:
            truth = ground_truth(info.path, problems)
        except BagError as exc:
            print(f'warning: {exc}: operational table only', file=sys.stderr)
    for line in problems:
        print(f'warning: {line}', file=sys.stderr)
    return truth, problems


def bag_pairs(info, truth: dict[int, dict]) -> Iterator[tuple[np.ndarray, int]]:
    """(rgb, y) of the labelled frames of the bag that the player publishes, decoded as the
    node decodes them (frames it cannot decode, it rejects: they are left out here too)."""
    for stamp_ns, rgb in decoded_frames(info, keep=truth.__contains__):
        yield rgb, int(truth[stamp_ns]['y'])


def direct_scores(pairs, model_dir: Path, precision: str, backend: str, point=None) -> dict:
    """The same engine on the same (rgb, y) frames without ROS (the reference for the replay)."""
    clf = Classifier(model_dir, precision, backend, operating_point=point)
    probs, judged, y = [], [], []
    for batch in batched(pairs, 16):
        scores = clf.classify([rgb for rgb, _ in batch])[0]
        probs.append(scores.probability)
        judged.append(scores.decision != UNASSESSABLE)
        y += [label for _, label in batch]
    clf.close()
    if not y:
        return {'direct_f1': float('nan'), 'direct_recall': float('nan')}
    keep = np.concatenate(judged)
    report = binary_report(np.array(y)[keep], np.concatenate(probs)[keep], clf.rule.threshold)
    return {'direct_f1': report['f1'], 'direct_recall': report['recall']}


def batched(items: Iterable, n: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def operating_point_table(rows: list[dict], model_dir: Path, point: str | None) -> list[dict]:
    """Every precision at every operating point of the decided point's domain, from the
    recorded diagnoses (each variant's probabilities are calibrated through its own engine for
    that domain, so the points' thresholds apply to all): figures with grouped-bootstrap CIs,
    paired recall vs FP32."""
    ops = ModelCard.load(model_dir).operating_points
    point = point or ops.get('default')
    domain = ops.get('points', {}).get(point, {}).get('domain')
    points = domain_points(ops, domain)
    results = {}
    for row in rows:
        with (Path(row['run_dir']) / 'scored.csv').open(newline='') as f:
            frames = list(csv.DictReader(f))
        results[row['precision']] = {
            'y': [int(r['y']) for r in frames],
            'probability': [float(r['probability']) for r in frames],
            'assessed': [int(r['decision']) != UNASSESSABLE for r in frames],
            'groups': [r['group_id'] or r['stamp_ns'] for r in frames],
            'key': [r['stamp_ns'] for r in frames],
            'labels': [r.get('label', '') for r in frames],
        }
    thresholds = {name: p['threshold'] for name, p in points.items()}
    return precision_table(results, thresholds) if thresholds else []
