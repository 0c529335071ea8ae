"""Mixing two runs' fold models (train.mix_runs): one weight chosen on validation, checked runs."""

import json

import numpy as np
import pytest

from tests.conftest import small_training
from training.data import DataError

SMALL = ('data.limit=160', 'train.views=1', 'export.check_images=4')
SOURCE = ('export.release=false',)  # a mix source needs its fold weights, not a release


@pytest.fixture(scope='module')
def two_runs(ham, tmp_path_factory):
    out = tmp_path_factory.mktemp('mix')
    a = small_training(ham, out, *SMALL, *SOURCE, 'name=a')
    b = small_training(
        ham, out, *SMALL, *SOURCE, 'name=b', 'train.feature_noise=0', 'train.head_lr=0.01'
    )
    return out, a, b


def _metrics(run):
    return json.loads((run / 'metrics.json').read_text())


def _aucs(run):
    return [f['at_threshold']['roc_auc'] for f in _metrics(run)['cv_folds']]


@pytest.mark.slow
def test_a_mix_at_zero_is_run_a_and_the_checker_catches_a_mix_chosen_on_test_folds(
    ham, two_runs, monkeypatch
):
    """l = 0 reproduces run A; that run's l is chosen (deliberately broken here) on every
    fold's inner validation pooled, as the mix once was: the checker names the mix, for each
    fold, and nothing else."""
    import training.mix
    from training.choosing import violations
    from training.data import fold_fit_val

    def pooled(data, fold, k, cfg):
        fraction = cfg.split.inner_val_fraction
        parts = [fold_fit_val(data, fold, j, fraction, cfg.seed)[1] for j in np.unique(fold)]
        return np.unique(np.concatenate(parts))

    out, a, b = two_runs
    assert violations(a) == []  # the folds' own validation chose each fold's stopping point
    assert not (a / 'model.fp32.onnx').exists() and 'holdout' not in _metrics(a)  # a study run
    monkeypatch.setattr(training.mix, 'choosing_images', pooled)
    only_a = small_training(
        ham, out, *SMALL, 'name=m0', f'train.mix_runs=[{a}, {b}]', 'train.mix_lambdas=[0]'
    )
    assert _aucs(only_a) == pytest.approx(_aucs(a), abs=1e-6)
    assert _aucs(a) != pytest.approx(_aucs(b), abs=1e-6)  # the two runs differ
    found = violations(only_a)
    assert [line.split(' (')[0] for line in found] == ['mix', 'mix'], found
    assert {line.split(': ')[0].rsplit(' ', 1)[1] for line in found} == {'0', '1'}


@pytest.mark.slow
def test_each_folds_mix_follows_the_rule_on_its_own_validation(ham, two_runs):
    from training.choosing import records, violations

    out, a, b = two_runs
    mixed = small_training(
        ham, out, *SMALL, 'name=mx', f'train.mix_runs=[{a}, {b}]', 'train.mix_lambdas=[0, 0.5, 1]'
    )
    report = _metrics(mixed)['mix']
    assert [s['config']['name'] for s in report['sources']] == ['a', 'b']  # provenance
    assert set(report['sources'][0]['sha256']) == {'fold0.top.weights.h5', 'fold1.top.weights.h5'}
    for k, lam in report['lambda_per_fold'].items():
        table = {float(x): v for x, v in report['validation_roc_auc'][k].items()}
        assert set(table) == {0.0, 0.5, 1.0}
        tolerance = {float(x): t for x, t in report['tolerance_per_fold'][k].items()}
        assert tolerance[0.0] == 0 and all(t > 0 for x, t in tolerance.items() if x)
        assert lam == shipped_rule(table, 'dermoscopic', tolerance)
    assert report['lambda'] == report['lambda_per_fold']['0']  # the release model's
    assert violations(mixed) == []
    chose = {r['stage']: r['folds'] for r in records(mixed)}
    assert chose['mix'] == chose['fold-validation']  # l chosen where each fold stopped
    weights = [_h5_arrays(run / 'fold0.top.weights.h5') for run in (a, b, mixed)]
    assert len(weights[0]) > 10 and all(len(w) == len(weights[0]) for w in weights)
    lam = report['lambda']
    for wa, wb, wm in zip(*weights):
        assert np.allclose(wm, (1 - lam) * wa + lam * wb, atol=1e-6)


def shipped_rule(table: dict[float, dict[str, float]], reference: str, tolerance: dict):
    """The rule written out here: among the l whose `reference` validation ROC-AUC is at most
    tolerance[l] below l = 0's, the best mean over domains; the smaller l on a tie."""
    best = None
    for lam in sorted(table):
        mean = sum(table[lam].values()) / len(table[lam])
        allowed = table[lam][reference] >= table[0.0][reference] - tolerance[lam]
        if allowed and (best is None or mean > best[1]):
            best = (lam, mean)
    return best[0]


@pytest.mark.parametrize(
    ('clinical_at_1', 'tolerance', 'expected'),
    [(0.92, 0.005, 0.5), (0.92, 1.0, 1.0), (0.88, 0.005, 0.5), (0.897, 1.0, 0.5)],
)
def test_the_mix_weight_follows_the_shipped_rule(clinical_at_1, tolerance, expected):
    """choose() on a table where the dermoscopic guard matters (l = 1 loses 0.02 of it): the
    guard keeps l <= 0.5 at a tolerance of 0.005; ties go to the smaller l."""
    from training.mix import Mix, choose

    aucs = {0.0: (0.90, 0.80), 0.5: (0.897, 0.88), 1.0: (0.88, clinical_at_1)}
    table = {lam: {'val': {3: {'dermoscopic': d, 'clinical': c}}} for lam, (d, c) in aucs.items()}
    tolerances = {lam: tolerance * bool(lam) for lam in aucs}
    got = choose(Mix(['a', 'b'], {}, table, tolerance={3: tolerances}), 'dermoscopic', 3)
    flat = {lam: {'dermoscopic': d, 'clinical': c} for lam, (d, c) in aucs.items()}
    assert got == expected == shipped_rule(flat, 'dermoscopic', tolerances)


def test_the_tolerance_is_the_bootstrap_se_of_the_paired_difference():
    """Two scores equal but for noise on 400 images: the SE is what resampling says (about the
    spread of the difference over independent draws), 0 for identical scores, and larger when
    the 400 images are 100 lesions seen 4 times (whole lesions are resampled)."""
    from sklearn.metrics import roc_auc_score

    from training.mix import paired_se, rank_auc

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    base = y + rng.normal(0, 1, 400)
    alone = np.arange(400)
    assert rank_auc(y, base) == pytest.approx(roc_auc_score(y, base))
    assert paired_se(y, base, base, alone, seed=0) == 0
    other = base + rng.normal(0, 0.5, 400)
    diffs = []
    for seed in range(60):
        draw = np.random.default_rng(seed + 1)
        y2 = draw.integers(0, 2, 400)
        b2 = y2 + draw.normal(0, 1, 400)
        diffs.append(rank_auc(y2, b2 + draw.normal(0, 0.5, 400)) - rank_auc(y2, b2))
    assert paired_se(y, base, other, alone, seed=0) == pytest.approx(np.std(diffs), rel=0.5)
    y4, b4, o4 = (np.repeat(a[:100], 4) for a in (y, base, other))
    lesions = np.repeat(np.arange(100), 4)
    assert paired_se(y4, b4, o4, lesions, seed=0) > 1.3 * paired_se(y4, b4, o4, alone, seed=0)


def _h5_arrays(path):
    import h5py

    arrays = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, o: arrays.update({name: o[()]}) if hasattr(o, 'shape') else None)
    return [arrays[name] for name in sorted(arrays)]


@pytest.mark.slow
def test_runs_of_another_split_are_refused(ham, two_runs):
    out, a, _ = two_runs
    with pytest.raises(DataError, match='another split'):
        small_training(ham, out, *SMALL, 'name=bad', 'seed=7', f'train.mix_runs=[{a}, {a}]')
