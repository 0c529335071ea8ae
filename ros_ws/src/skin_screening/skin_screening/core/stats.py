"""Running figures a node reports on /diagnostics: counts, rate, latency percentiles."""

from __future__ import annotations

from collections import deque

import numpy as np


class RunningStats:
    def __init__(self, window: int = 200):
        self.received = self.dropped = self.errors = self.count = self.unassessable = 0
        self._latency: deque[float] = deque(maxlen=window)
        self._engine: deque[float] = deque(maxlen=window)
        self._times: deque[float] = deque(maxlen=window)

    def processed(self, latency_ms: float, engine_ms: float, now_s: float) -> None:
        self.count += 1
        self._latency.append(latency_ms)
        self._engine.append(engine_ms)
        self._times.append(now_s)

    def rate_hz(self) -> float:
        if len(self._times) < 2 or self._times[-1] <= self._times[0]:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])

    def summary(self) -> dict[str, str]:
        lat = np.array(self._latency) if self._latency else np.array([np.nan])
        eng = np.array(self._engine) if self._engine else np.array([np.nan])
        return {
            'frames_received': str(self.received),
            'frames_processed': str(self.count),
            'frames_dropped': str(self.dropped),
            'frames_rejected': str(self.errors),
            'frames_unassessable': str(self.unassessable),  # answered UNASSESSABLE by the gate
            'rate_hz': f'{self.rate_hz():.2f}',
            'latency_median_ms': f'{np.median(lat):.2f}',
            'latency_p99_ms': f'{np.percentile(lat, 99):.2f}',
            'inference_median_ms': f'{np.median(eng):.2f}',
        }
