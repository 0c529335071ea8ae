import math

import numpy as np
import pytest
from skin_screening.core.metrics import (
    binary_report,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
)
from skin_screening.core.postprocess import (
    OTHER,
    REFER,
    SUSPICIOUS,
    DecisionRule,
    NonFiniteOutput,
    score,
)


def test_single_head_has_no_epistemic_estimate():
    s = score(np.array([[2.0], [-2.0]]), DecisionRule(threshold=0.5))
    assert np.allclose(s.probability, 1 / (1 + np.exp([-2.0, 2.0])))
    assert np.all(np.isnan(s.epistemic))
    assert list(s.decision) == [SUSPICIOUS, OTHER]


def test_disagreeing_heads_are_epistemic_uncertainty():
    agree = score(np.array([[3.0, 3.0, 3.0]]), DecisionRule())
    disagree = score(np.array([[6.0, -6.0, 0.0]]), DecisionRule())
    assert agree.epistemic[0] == pytest.approx(0.0, abs=1e-6)
    assert disagree.epistemic[0] > 0.3
    assert disagree.epistemic[0] <= disagree.entropy[0] <= math.log(2) + 1e-9


def test_high_uncertainty_is_referred():
    rule = DecisionRule(threshold=0.5, referral_threshold=0.6)
    s = score(np.array([[0.1], [4.0]]), rule)
    assert list(s.decision) == [REFER, SUSPICIOUS]


def test_temperature_softens_probabilities():
    hot = score(np.array([[2.0]]), DecisionRule(temperature=2.0)).probability[0]
    assert hot == pytest.approx(1 / (1 + math.exp(-1.0)))


def test_nan_output_gives_no_scores():
    with pytest.raises(NonFiniteOutput):
        score(np.array([[np.nan]]), DecisionRule())


def test_report_counts_and_auc():
    y = np.array([1, 1, 0, 0, 1, 0])
    p = np.array([0.9, 0.4, 0.3, 0.8, 0.7, 0.1])
    r = binary_report(y, p, 0.5)
    assert (r['recall'], r['precision'], r['specificity']) == (2 / 3, 2 / 3, 2 / 3)
    assert r['roc_auc'] == pytest.approx(7 / 9)


def test_sensitivity_policy_keeps_recall_at_target():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    p = np.clip(y * 0.3 + rng.normal(0.35, 0.2, 2000), 0, 1)
    t = choose_threshold(y, p, 'min_sensitivity', 0.9)
    assert binary_report(y, p, t)['recall'] >= 0.9
    assert t > choose_threshold(y, p, 'min_sensitivity', 0.99)


def test_temperature_fit_recovers_overconfidence():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, 20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-logits))).astype(int)
    assert fit_temperature(y, logits * 3) == pytest.approx(3.0, rel=0.05)
    assert expected_calibration_error(y, 1 / (1 + np.exp(-logits))) < 0.02
