import math

import numpy as np
import pytest
from skin_screening.core.metrics import (
    binary_report,
    choose_threshold,
    coverage_curve,
    error_detection_auroc,
    expected_calibration_error,
    fit_calibration,
)
from skin_screening.core.postprocess import (
    OTHER,
    REFER,
    SUSPICIOUS,
    DecisionRule,
    NonFiniteOutput,
    score,
    stack_views,
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


def test_ambiguity_refers_frames_near_the_decision_threshold():
    rule = DecisionRule(threshold=0.3, referral_threshold=0.5, referral_score='ambiguity')
    logits = np.log(np.array([[0.3 / 0.7], [0.5 / 0.5], [0.95 / 0.05], [0.05 / 0.95]]))
    s = score(logits, rule)
    assert s.ambiguity[0] == pytest.approx(1.0)
    assert s.ambiguity[1] == pytest.approx(0.3 / 0.7)  # odds ratio to the threshold's odds
    assert list(s.decision) == [REFER, SUSPICIOUS, SUSPICIOUS, OTHER]
    assert s.entropy[1] > s.entropy[0]  # entropy would refer p = 0.5, not the threshold


def test_test_time_views_average_per_head_before_heads_combine():
    view_a, view_b = np.array([[2.0, 2.0], [0.0, 1.0]]), np.array([[-2.0, -2.0], [0.0, 1.0]])
    logits = stack_views([view_a, view_b])
    assert logits.shape == (4, 2) and np.array_equal(logits[1], view_b[0])
    s = score(logits, DecisionRule(views=2))
    assert s.probability == pytest.approx([0.5, (0.5 + 1 / (1 + math.exp(-1))) / 2])
    assert s.epistemic[0] == pytest.approx(0.0, abs=1e-9)  # views disagree, heads do not
    with pytest.raises(ValueError, match='whole number of 2 views'):
        score(logits[:3], DecisionRule(views=2))


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
    temperature, bias = fit_calibration(y, logits * 3)
    assert temperature == pytest.approx(3.0, rel=0.05)
    assert bias == pytest.approx(0.0, abs=0.05)
    assert expected_calibration_error(y, 1 / (1 + np.exp(-logits))) < 0.02


def test_calibration_bias_undoes_a_prior_shift():
    """Class weights shift logits by a constant; temperature alone cannot undo that."""
    rng = np.random.default_rng(2)
    logits = rng.normal(-1.5, 1.5, 20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-logits))).astype(int)
    temperature, bias = fit_calibration(y, logits + 1.2)
    assert temperature == pytest.approx(1.0, rel=0.05)
    assert bias == pytest.approx(-1.2, abs=0.06)
    rule = DecisionRule(temperature=temperature, bias=bias)
    calibrated = score(logits + 1.2, rule).probability
    assert expected_calibration_error(y, calibrated) < 0.02
    assert expected_calibration_error(y, 1 / (1 + np.exp(-(logits + 1.2)))) > 0.1


def test_uncertainty_ranks_errors_and_referral_raises_f1():
    rng = np.random.default_rng(3)
    p = rng.random(4000)
    y = (rng.random(4000) < p).astype(int)  # calibrated: errors near 0.5
    uncertainty = -np.abs(p - 0.5)
    assert error_detection_auroc(y, p >= 0.5, uncertainty) > 0.7
    assert np.isnan(error_detection_auroc(y, p >= 0.5, np.full(4000, np.nan)))
    curve = coverage_curve(y, p, uncertainty, 0.5)
    assert [c['coverage'] for c in curve][:2] == [1.0, 0.95]
    at = {c['coverage']: c for c in curve}
    assert at[0.8]['f1'] > at[1.0]['f1'] and at[0.5]['accuracy'] > at[0.8]['accuracy']


def test_wilson_interval_matches_the_textbook_values():
    from skin_screening.core.metrics import wilson_interval

    low, high = wilson_interval(8, 10)
    assert round(low, 3) == 0.490 and round(high, 3) == 0.943
    assert wilson_interval(0, 10)[0] == 0.0 and np.isnan(wilson_interval(0, 0)[0])


def test_bootstrap_by_group_is_wider_when_frames_of_a_lesion_agree():
    from skin_screening.core.metrics import bootstrap_interval

    rng = np.random.default_rng(1)
    per_lesion = rng.normal(size=20)
    values = np.repeat(per_lesion, 10)  # 10 frames of each of 20 lesions, all alike
    groups = [f'lesion{i}' for i in range(20) for _ in range(10)]
    by_frame = bootstrap_interval(lambda k: values[k].mean(), len(values))
    by_lesion = bootstrap_interval(lambda k: values[k].mean(), len(values), groups)
    assert by_lesion[0] < values.mean() < by_lesion[1]
    assert (by_lesion[1] - by_lesion[0]) > 2 * (by_frame[1] - by_frame[0])
