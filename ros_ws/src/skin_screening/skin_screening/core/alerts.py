"""Alerts for downstream nodes: evidence over a sliding window of frames, with hysteresis.

One suspicious frame is not an alert: the level rises to SUSPICIOUS only when the window holds
at least `min_frames` frames and their mean probability reaches `raise_at`; it falls back to
CLEAR only when the mean drops below `clear_at` (< raise_at). REFER is raised likewise on the
window's mean uncertainty. An event is emitted only when the level changes, so a flickering
probability does not spam.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

CLEAR, SUSPICIOUS, REFER = 0, 1, 2
LEVEL_NAMES = {CLEAR: 'clear', SUSPICIOUS: 'suspicious lesion', REFER: 'uncertain: refer'}


@dataclass(frozen=True)
class AlertRule:
    window: int = 15
    min_frames: int = 10
    raise_at: float = 0.6
    clear_at: float = 0.4
    refer_uncertainty: float | None = None  # mean referral score above which to REFER

    def __post_init__(self) -> None:
        if not 1 <= self.min_frames <= self.window:
            raise ValueError('need 1 <= min_frames <= window')
        if not 0.0 <= self.clear_at < self.raise_at <= 1.0:
            raise ValueError('need 0 <= clear_at < raise_at <= 1 (hysteresis)')


@dataclass(frozen=True)
class AlertEvent:
    level: int
    probability: float
    uncertainty: float
    frames: int
    stamp_ns: int

    @property
    def text(self) -> str:
        return (
            f'{LEVEL_NAMES[self.level]}: p={self.probability:.2f}, '
            f'uncertainty={self.uncertainty:.2f} over {self.frames} frames'
        )


class AlertWindow:
    def __init__(self, rule: AlertRule):
        self.rule = rule
        self.level = CLEAR
        self._probs: deque[float] = deque(maxlen=rule.window)
        self._uncert: deque[float] = deque(maxlen=rule.window)

    def reset(self) -> None:
        self._probs.clear()
        self._uncert.clear()
        self.level = CLEAR

    def update(self, probability: float, uncertainty: float, stamp_ns: int) -> AlertEvent | None:
        """Add one frame's scores; return an event when the alert level changes."""
        self._probs.append(float(probability))
        self._uncert.append(float(uncertainty))
        n = len(self._probs)
        if n < self.rule.min_frames:
            return None
        p, u = sum(self._probs) / n, sum(self._uncert) / n
        level = self.level
        refer = self.rule.refer_uncertainty
        if refer is not None and u > refer:
            level = REFER
        elif p >= self.rule.raise_at:
            level = SUSPICIOUS
        elif p < self.rule.clear_at or (level == REFER and refer is not None and u <= refer):
            level = CLEAR
        if level == self.level:
            return None
        self.level = level
        return AlertEvent(level, p, u, n, stamp_ns)
