"""One checker for every choice (training/choosing.py): which images chose what, per outer fold."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from tests.conftest import REPO
from training.choosing import record, records, violations


def _split(folder, folds: dict[str, int]) -> None:
    with (folder / 'split.csv').open('w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['path', 'label', 'y', 'group', 'fold', 'domain'])
        for image, k in folds.items():
            writer.writerow([f'images/{image}.jpg', 'nv', 0, image, k, 'dermoscopic'])


def test_an_image_of_the_fold_a_choice_serves_is_a_violation(tmp_path):
    _split(tmp_path, {'a': 0, 'b': 0, 'c': 1, 'd': 2})
    record(tmp_path, 'thresholds', 'a threshold', {0: ['c', 'd', 'photo_1'], 1: ['a', 'd']})
    assert violations(tmp_path) == []  # 'photo_1' is in no fold: allowed
    record(tmp_path, 'mix', 'mix weight', {0: ['a', 'c'], 2: ['d']})
    found = violations(tmp_path)
    assert len(found) == 2 and all(line.startswith('mix (mix weight) for fold ') for line in found)
    assert '1 of its 2 choosing images are in fold 0, e.g. a' in found[0]
    done = subprocess.run(
        [sys.executable, '-m', 'training', 'check-choices', str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and done.stdout.count('violation: mix') == 2


def test_the_shipped_models_recorded_choices_and_the_one_that_saw_the_held_out_fold():
    """Every model folder records what chose its figures. The shipped mix (issue 22) chose ONE
    l on all folds' inner validation pooled: the checker names it, for every fold, and nothing
    else; its thresholds, calibrations and gate chose on training-fold images only. (Rerunning
    the recipe now chooses each fold's l on its own validation: tests/test_mix.py.)"""
    for folder in sorted((REPO / 'data' / 'models').iterdir()):
        stages = {r['stage'] for r in records(folder)}
        assert {'fold-validation', 'thresholds', 'variant-calibration', 'gate'} <= stages, folder
        found = violations(folder)
        if 'mix' not in stages:
            assert found == [], found
            continue
        folds = sorted(r['folds'] for r in records(folder) if r['stage'] == 'mix')[0]
        assert [line.split(' (')[0] for line in found] == ['mix'] * len(folds), found


@pytest.mark.parametrize('stage', ['thresholds', 'variant-calibration', 'gate'])
def test_no_held_out_image_chose_what_the_shipped_model_decides_with(stage):
    from skin_screening.core.model_card import DEFAULT_MODEL, ModelCard

    model = REPO / DEFAULT_MODEL
    held = str(ModelCard.load(model).data['heldout_fold'])
    with (model / 'heldout.csv').open() as f:
        heldout = {r['path'].rsplit('/', 1)[-1].rsplit('.', 1)[0] for r in csv.DictReader(f)}
    (body,) = [r for r in records(model) if r['stage'] == stage]
    assert len(body['folds'][held]) > 100 and not heldout & set(body['folds'][held])
