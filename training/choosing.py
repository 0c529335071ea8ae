"""Which images chose what: one record per choice, one checker for all of them.

Every stage that makes a choice from data (early stopping, calibration, a threshold, a referral
bound, a mix weight, a gate reference or bound) writes the ids of the images it was made on,
under the OUTER FOLD whose figures the choice serves, to `choosing/<stage>.json` beside its
artifacts (a training run's folder; the model folder for stages run on it):

    {"stage": "mix", "chooses": "mix weight l", "folds": {"0": ["ISIC_0024306", ...], ...}}

The rule (issue 30): a choice serving outer fold k is made on images of k's own training folds
only. The release model is the model of the held-out fold h, so every choice it ships with
serves fold h, and no held-out image may be among them; a CV figure of test fold k is honest
only if no image of fold k chose anything it was measured with. Ids the split does not know
(non-lesion probe images, camera frames) are allowed: they are in no fold.

    python -m training check-choices FOLDER     (exit 1 and each violation, or the count checked)
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

CHOOSING = 'choosing'


def record(folder: str | Path, stage: str, chooses: str, folds: Mapping[int, Iterable]) -> Path:
    """Write (or replace) the record of `stage`: per outer fold, the ids that chose."""
    path = Path(folder) / CHOOSING / f'{stage}.json'
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        'stage': stage,
        'chooses': chooses,
        'folds': {str(int(k)): sorted({str(i) for i in ids}) for k, ids in folds.items()},
    }
    path.write_text(json.dumps(body) + '\n')
    return path


def records(folder: str | Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((Path(folder) / CHOOSING).glob('*.json'))]


def split_folds(folder: str | Path) -> dict[str, int]:
    """Image id -> fold, from the folder's split.csv (ids are file stems, as LabelledSet's)."""
    path = Path(folder) / 'split.csv'
    if not path.is_file():
        raise FileNotFoundError(f'{path} not found: the choices cannot be checked without it')
    with path.open(newline='') as f:
        return {Path(r['path']).stem: int(r['fold']) for r in csv.DictReader(f)}


def violations(folder: str | Path) -> list[str]:
    """One line per record and outer fold whose choosing images include that fold's."""
    fold_of = split_folds(folder)
    out = []
    for body in records(folder):
        for k, ids in body['folds'].items():
            bad = [i for i in ids if fold_of.get(i) == int(k)]
            if bad:
                out.append(
                    f'{body["stage"]} ({body["chooses"]}) for fold {k}: {len(bad)} of its '
                    f'{len(ids)} choosing images are in fold {k}, e.g. {", ".join(bad[:3])}'
                )
    return out


def summary(folder: str | Path) -> dict[str, dict[str, int]]:
    """stage -> outer fold -> number of choosing images (for notes and cards)."""
    return {b['stage']: {k: len(v) for k, v in b['folds'].items()} for b in records(folder)}


def record_legacy(model_dir: str | Path) -> list[str]:
    """Records for a model folder released before choices were recorded, derived from its
    card and split as each stage of that time chose (it is what happened, not what passes):
    each fold's inner validation (early stopping, calibration); a mix weight chosen ONCE for
    every fold on all folds' inner validation pooled; thresholds on the out-of-fold predictions
    outside the held-out fold; variant calibrations on the release model's inner validation.
    A gate fitted then on dermoscopy (plus, optionally, clinical photographs outside the
    split: in no fold) chose on its seeded reference and the release validation; a gate fitted
    since records itself. -> the stages written."""
    import numpy as np
    from skin_screening.core.model_card import ModelCard

    from .data import fold_fit_val, release_validation, split_set

    card = ModelCard.load(model_dir)
    config = card.training.get('config', {})
    fraction, seed = config['split']['inner_val_fraction'], int(config['seed'])
    held = int(card.data.get('heldout_fold', 0))
    data, fold = split_set(model_dir)
    ids = np.array(data.ids)
    folds = sorted({int(k) for k in np.unique(fold)})
    val = {k: ids[fold_fit_val(data, fold, k, fraction, seed)[1]] for k in folds}
    written = ['fold-validation']
    record(model_dir, 'fold-validation', 'early stopping, calibration, threshold and referral '
           'bound of each fold', val)  # fmt: skip
    if card.training.get('mix'):
        pooled = np.unique(np.concatenate(list(val.values())))
        record(model_dir, 'mix', 'ONE mix weight l for every fold (before issue 30)',
               dict.fromkeys(folds, pooled))  # fmt: skip
        written.append('mix')
    if card.operating_points:
        record(model_dir, 'thresholds', 'operating-point thresholds', {held: ids[fold != held]})
        calibration = {held: release_validation(model_dir).ids}
        record(model_dir, 'variant-calibration', 'calibration of every variant', calibration)
        written += ['thresholds', 'variant-calibration']
    if card.gate and not (Path(model_dir) / CHOOSING / 'gate.json').is_file():
        from .gate import dermoscopy_choosers

        _, _, pick, gate_val = dermoscopy_choosers(Path(model_dir), card.gate['chosen_on']['seed'])
        chose = [*ids[pick], *gate_val.ids]
        record(
            model_dir, 'gate', 'gate references, distance bounds and quality limits', {held: chose}
        )
        written.append('gate')
    return written
