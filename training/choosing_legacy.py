"""Choosing records (training/choosing.py) for a model folder released before they existed.

    uv run python -c "from training.choosing_legacy import record_legacy as r; r('data/models/X')"

Written once for data/models/mobilenetv2-a0.5 and mobilenetv2-a1.0-clinical (issue 30).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skin_screening.core.model_card import ModelCard

from .choosing import CHOOSING, record
from .data import fold_fit_val, release_validation, split_set
from .gate import dermoscopy_choosers


def record_legacy(model_dir: str | Path) -> list[str]:
    """Records for a model folder released before choices were recorded, derived from its
    card and split as each stage of that time chose (it is what happened, not what passes):
    each fold's inner validation (early stopping, calibration); a mix weight chosen ONCE for
    every fold on all folds' inner validation pooled; thresholds on the out-of-fold predictions
    outside the held-out fold; variant calibrations on the release model's inner validation.
    A gate fitted then on dermoscopy (plus, optionally, clinical photographs outside the
    split: in no fold) chose on its seeded reference and the release validation; a gate fitted
    since records itself. -> the stages written."""
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
        _, _, pick, gate_val = dermoscopy_choosers(Path(model_dir), card.gate['chosen_on']['seed'])
        chose = [*ids[pick], *gate_val.ids]
        record(
            model_dir, 'gate', 'gate references, distance bounds and quality limits', {held: chose}
        )
        written.append('gate')
    return written
