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
