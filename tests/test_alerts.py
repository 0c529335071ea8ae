import pytest
from skin_screening.core.alerts import CLEAR, REFER, SUSPICIOUS, AlertRule, AlertWindow


def _feed(window, probs, entropy=0.3):
    return [e for i, p in enumerate(probs) if (e := window.update(p, entropy, i)) is not None]


def test_one_suspicious_frame_is_not_an_alert():
    w = AlertWindow(AlertRule(window=10, min_frames=5, raise_at=0.6, clear_at=0.4))
    assert _feed(w, [0.1] * 6 + [0.99] + [0.1] * 6) == []


def test_sustained_evidence_raises_once_and_clears_below_the_lower_bound():
    w = AlertWindow(AlertRule(window=10, min_frames=5, raise_at=0.6, clear_at=0.4))
    events = _feed(w, [0.9] * 12)
    assert [e.level for e in events] == [SUSPICIOUS] and events[0].frames == 5
    assert _feed(w, [0.45] * 20) == []  # between the bounds: hysteresis holds the alert
    assert [e.level for e in _feed(w, [0.1] * 20)] == [CLEAR]


def test_flicker_around_the_threshold_does_not_spam():
    w = AlertWindow(AlertRule(window=10, min_frames=5, raise_at=0.6, clear_at=0.4))
    # frame 4: window 0.7 0.5 0.7 0.5 0.7, mean 0.62 -> raised; after that the mean swings
    # between 0.58 and 0.62, never below 0.4: one event in 100 frames
    events = _feed(w, [0.7, 0.5] * 50)
    assert [(e.level, e.stamp_ns) for e in events] == [(SUSPICIOUS, 4)]


def test_a_sequence_that_crosses_both_bounds():
    """Expectations worked out by hand (window 4, min 2 frames, raise 0.6, clear 0.4)."""
    w = AlertWindow(AlertRule(window=4, min_frames=2, raise_at=0.6, clear_at=0.4))
    probs = [0.2, 0.9, 0.9, 0.3, 0.3, 0.1, 0.1, 0.8, 0.9, 0.9]
    # means: -, .55, .667 (raise at 2), .575, .6, .4 (not < .4), .2 (clear at 6), .275, .475,
    #        .675 (raise at 9)
    events = _feed(w, probs)
    assert [(e.level, e.stamp_ns, e.frames) for e in events] == [
        (SUSPICIOUS, 2, 3),
        (CLEAR, 6, 4),
        (SUSPICIOUS, 9, 4),
    ]
    assert events[0].probability == pytest.approx((0.2 + 0.9 + 0.9) / 3)


def test_high_uncertainty_refers():
    w = AlertWindow(AlertRule(window=5, min_frames=3, refer_uncertainty=0.6))
    events = [w.update(0.5, 0.69, i) for i in range(5)]
    assert [e.level for e in events if e] == [REFER]
    assert 'refer' in [e for e in events if e][0].text
