"""Gate health: how many of the recent frames the gate judged unassessable, and why (ROS-free).

A screening device is never silently blind. The inference node keeps, over a sliding window of
the last `window_frames` frames that arrived within the last `window_s` seconds, the share of
frames the gate flagged and the dominant reason, and says so: OK below `warn_share`, WARN at or
above it, ERROR at or above `error_share` (nearly every frame), with what the wearer should do.

Defaults: 90 frames (3 s at 30 fps) within 10 s; WARN at 25 % (the gate flags a few per cent of
its reference domains' images: a quarter is a camera or a scene the model does not know), ERROR at
90 %. The window's first 15 frames say nothing yet.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from .postprocess import NOT_A_LESION

OK, WARN, ERROR = 0, 1, 2
ADVICE = {
    'too dark': 'more light on the skin',
    'overexposed': 'less light, or the camera further from the skin',
    'blurred': 'hold the camera still, clean the lens',
    'no skin colour': 'point the camera at the skin',
    NOT_A_LESION: (
        'the gate does not know this camera or scene: point it at a lesion, or have the gate '
        'refitted with photographs from this camera'
    ),
}


@dataclass(frozen=True)
class GateStatus:
    level: int  # OK, WARN or ERROR
    share: float  # unassessable frames / frames in the window
    frames: int
    reasons: dict[str, int]  # reason -> frames in the window

    @property
    def dominant(self) -> str:
        return max(self.reasons, key=self.reasons.get) if self.reasons else ''

    @property
    def message(self) -> str:
        if self.level == OK:
            return f'{self.share:.0%} of the last {self.frames} frames unassessable'
        advice = ADVICE.get(self.dominant, 'retake')
        return (
            f'{self.share:.0%} of the last {self.frames} frames unassessable, mostly '
            f'{self.dominant!r}: {advice}'
        )


class GateHealth:
    def __init__(
        self,
        window_frames: int = 90,
        window_s: float = 10.0,
        warn_share: float = 0.25,
        error_share: float = 0.9,
        min_frames: int = 15,
    ):
        if not 0 < warn_share <= error_share <= 1:
            raise ValueError('need 0 < warn_share <= error_share <= 1')
        self.window_s, self.warn, self.error = window_s, warn_share, error_share
        self.min_frames = min_frames  # fewer frames in the window: nothing to say yet (OK)
        self._frames: deque[tuple[float, str]] = deque(maxlen=window_frames)
        self._counts: Counter[str] = Counter()

    def update(self, time_s: float, reason: str) -> GateStatus:
        """A frame that arrived at `time_s` ('' = assessable, else the gate's reason)."""
        if len(self._frames) == self._frames.maxlen:
            self._forget()
        self._frames.append((time_s, reason))
        self._counts[reason] += 1
        while self._frames and self._frames[0][0] < time_s - self.window_s:
            self._forget()
        return self.status()

    def _forget(self) -> None:
        _, reason = self._frames.popleft()
        self._counts[reason] -= 1

    def status(self) -> GateStatus:
        n = len(self._frames)
        reasons = {r: c for r, c in self._counts.items() if r and c > 0}
        share = sum(reasons.values()) / n if n else 0.0
        level = OK
        if n >= self.min_frames:
            level = ERROR if share >= self.error else WARN if share >= self.warn else OK
        return GateStatus(level, share, n, reasons)
