"""Never silently blind: the gate's health over recent frames, and high probability never
dropped as 'not a lesion image'."""

import numpy as np
import pytest
from skin_screening.core.gate_health import ERROR, OK, WARN, GateHealth
from skin_screening.core.postprocess import (
    NOT_A_LESION,
    REFER,
    SUSPICIOUS,
    UNASSESSABLE,
    Scores,
)


def _feed(health, reasons, start=0.0, fps=30.0):
    status = None
    for i, reason in enumerate(reasons):
        status = health.update(start + i / fps, reason)
    return status


def test_the_share_over_the_window_sets_the_level_and_names_the_dominant_reason():
    health = GateHealth(window_frames=90, window_s=10, warn_share=0.25, error_share=0.9)
    assert _feed(health, [''] * 89 + ['blurred']).level == OK  # 1 of 90
    status = _feed(health, ['blurred'] * 20 + [NOT_A_LESION] * 10, start=3.0)
    assert (status.level, status.frames, status.dominant) == (WARN, 90, 'blurred')
    assert status.share == pytest.approx(31 / 90) and 'hold the camera still' in status.message
    status = _feed(health, [NOT_A_LESION] * 85, start=4.0)
    assert status.level == ERROR and status.dominant == NOT_A_LESION
    assert 'photographs from this camera' in status.message  # what to do about a new camera
    assert _feed(health, [''] * 90, start=8.0).level == OK  # recovers as the window moves


def test_old_frames_leave_the_window_by_time_and_a_short_window_says_nothing():
    health = GateHealth(window_frames=1000, window_s=2.0, min_frames=15)
    assert _feed(health, ['too dark'] * 14).level == OK  # 14 frames: too few to judge
    assert _feed(health, ['too dark'] * 30, start=1.0).level == ERROR
    status = _feed(health, [''] * 60, start=10.0)  # 8 s later: the dark frames are gone
    assert (status.level, status.frames, status.reasons) == (OK, 60, {})


def _scores(p):
    p = np.asarray(p, float)
    zeros = np.zeros_like(p)
    decision = (p >= 0.5).astype(np.uint8) * SUSPICIOUS
    return Scores(p, zeros, zeros, zeros, decision)


def test_a_probable_cancer_the_gate_does_not_know_is_referred_not_dropped():
    reasons = ['', NOT_A_LESION, NOT_A_LESION, 'blurred', 'too dark']
    gated = _scores([0.9, 0.9, 0.1, 0.9, 0.9]).gated(reasons, threshold=0.5)
    assert gated.decision.tolist() == [SUSPICIOUS, REFER, UNASSESSABLE, UNASSESSABLE, UNASSESSABLE]
    assert gated.reasons == tuple(reasons)  # the gate's verdict kept for the record
    without = _scores([0.9, 0.9]).gated(['', NOT_A_LESION])  # no threshold: as before
    assert without.decision.tolist() == [SUSPICIOUS, UNASSESSABLE]


def test_the_report_says_first_how_much_could_not_be_judged_and_why():
    from skin_screening.core.session_report import gate_banner

    rows = [{'unassessable_reason': r} for r in [''] * 6 + ['blurred'] * 3 + [NOT_A_LESION]]
    banner = gate_banner(rows)
    assert '4 of 10 frames (40%) could not be judged' in banner
    assert banner.index('blurred: 3 frames') < banner.index(f'{NOT_A_LESION}: 1 frames')
    assert 'clean the lens' in banner and gate_banner(rows[:6]) == ''
