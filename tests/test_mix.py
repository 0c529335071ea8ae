"""Mixing two runs' fold models (train.mix_runs): one weight chosen on validation, checked runs."""

import json

import numpy as np
import pytest

from tests.conftest import small_training
from training.data import DataError

SMALL = ('data.limit=160', 'train.views=1', 'export.check_images=4')


@pytest.fixture(scope='module')
def two_runs(ham, tmp_path_factory):
    out = tmp_path_factory.mktemp('mix')
    a = small_training(ham, out, *SMALL, 'name=a')
    b = small_training(ham, out, *SMALL, 'name=b', 'train.feature_noise=0', 'train.head_lr=0.01')
    return out, a, b


def _metrics(run):
    return json.loads((run / 'metrics.json').read_text())


def _aucs(run):
    return [f['at_threshold']['roc_auc'] for f in _metrics(run)['cv_folds']]


@pytest.mark.slow
def test_a_mix_at_zero_is_run_a_and_the_chosen_mix_is_recorded(ham, two_runs):
    out, a, b = two_runs
    only_a = small_training(
        ham, out, *SMALL, 'name=m0', f'train.mix_runs=[{a}, {b}]', 'train.mix_lambdas=[0]'
    )
    assert _aucs(only_a) == pytest.approx(_aucs(a), abs=1e-6)
    assert _aucs(a) != pytest.approx(_aucs(b), abs=1e-6)  # the two runs differ
    mixed = small_training(
        ham,
        out,
        *SMALL,
        'name=mx',
        f'train.mix_runs=[{a}, {b}]',
        'train.mix_lambdas=[0, 0.5, 1]',
    )
    report = _metrics(mixed)['mix']
    lam = report['lambda']
    assert set(report['validation_roc_auc']) == {'0.0', '0.5', '1.0'}
    assert [s['config']['name'] for s in report['sources']] == ['a', 'b']  # provenance
    assert set(report['sources'][0]['sha256']) == {'fold0.top.weights.h5', 'fold1.top.weights.h5'}
    table = {float(k): v for k, v in report['validation_roc_auc'].items()}
    assert lam == shipped_rule(table, 'dermoscopic', 0.005)  # the default tolerance
    weights = [_h5_arrays(run / 'fold0.top.weights.h5') for run in (a, b, mixed)]
    assert len(weights[0]) > 10 and all(len(w) == len(weights[0]) for w in weights)
    for wa, wb, wm in zip(*weights):
        assert np.allclose(wm, (1 - lam) * wa + lam * wb, atol=1e-6)


def shipped_rule(table: dict[float, dict[str, float]], reference: str, tolerance: float):
    """The rule written out here: among the l whose `reference` validation ROC-AUC is at most
    `tolerance` below l = 0's, the best mean over domains; the smaller l on a tie."""
    floor = table[0.0][reference] - tolerance
    best = None
    for lam in sorted(table):
        mean = sum(table[lam].values()) / len(table[lam])
        if table[lam][reference] >= floor and (best is None or mean > best[1]):
            best = (lam, mean)
    return best[0]


@pytest.mark.parametrize(
    ('clinical_at_1', 'tolerance', 'expected'),
    [(0.92, 0.005, 0.5), (0.92, 1.0, 1.0), (0.88, 0.005, 0.5), (0.897, 1.0, 0.5)],
)
def test_the_mix_weight_follows_the_shipped_rule(clinical_at_1, tolerance, expected):
    """choose() on a table where the dermoscopic guard matters (l = 1 loses 0.02 of it): the
    guard keeps l <= 0.5 at the shipped tolerance; ties go to the smaller l."""
    from training.mix import Mix, choose

    aucs = {0.0: (0.90, 0.80), 0.5: (0.897, 0.88), 1.0: (0.88, clinical_at_1)}
    table = {lam: {'val': [{'dermoscopic': d, 'clinical': c}] * 2} for lam, (d, c) in aucs.items()}
    got = choose(Mix(['a', 'b'], {}, table), 'dermoscopic', tolerance)
    flat = {lam: {'dermoscopic': d, 'clinical': c} for lam, (d, c) in aucs.items()}
    assert got == expected == shipped_rule(flat, 'dermoscopic', tolerance)


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
