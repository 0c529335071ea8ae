"""CSV recording of a session under data/: diagnoses, alerts, power, energy per inference.

One run directory per session, a header row per file, rows flushed every `flush_every` rows
and at close. Energy per inference integrates power over time (trapezoid) over fixed windows
and divides by the inferences received in the window. A full disk stops recording with a
RecordingError (what was written stays on disk, flushed); below `min_free_mb` new rows are
refused with the same error before the disk actually fills.
"""

from __future__ import annotations

import bisect
import csv
import errno
import json
import shutil
from pathlib import Path

import numpy as np

DIAGNOSIS_FIELDS = (
    'stamp_ns',
    'frame_id',
    'received_ns',
    'decision',
    'label',
    'unassessable_reason',
    'probability',
    'threshold',
    'operating_point',
    'entropy',
    'epistemic',
    'ambiguity',
    'referral_score',
    'referral_threshold',
    'precision',
    'backend',
    'model_id',
    'inference_ms',
    'latency_ms',
)
ALERT_FIELDS = (
    'stamp_ns',
    'frame_id',
    'received_ns',
    'level',
    'probability',
    'uncertainty',
    'frames',
    'text',
)
POWER_FIELDS = ('stamp_ns', 'received_ns', 'source', 'total_watts', 'rails')
ENERGY_FIELDS = (
    'start_ns',
    'end_ns',
    'joules',
    'mean_watts',
    'inferences',
    'joules_per_inference',
)


# Columns that change rarely (the model, its precision, backend, operating point, thresholds):
# a row leaves one blank while it equals the row above's, read_rows() fills it back in. A
# diagnoses row: 130 bytes instead of 220 (10,000 frames: 1.3 MB instead of 2.2). A file
# opened again (a node restarted in its session) writes its first row in full.
STICKY = {
    'diagnoses.csv': (
        'threshold',
        'operating_point',
        'referral_score',
        'referral_threshold',
        'precision',
        'backend',
        'model_id',
    ),
    'power.csv': ('source',),
}


class RecordingError(RuntimeError):
    pass


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a recorder CSV (or any CSV) with its sticky columns filled in from above."""
    path = Path(path)
    sticky, last, rows = STICKY.get(path.name, ()), {}, []
    with path.open(newline='') as f:
        for row in csv.DictReader(f):
            for name in sticky:
                if row.get(name):
                    last[name] = row[name]
                else:
                    row[name] = last.get(name, '')
            rows.append(row)
    return rows


def _compact(value):
    """Floats with 9 significant digits: every float32 of a message exactly (the shortest
    round trip of a float64 took 17, a quarter of a diagnoses row)."""
    return f'{value:.9g}' if isinstance(value, float) else value


class CsvLog:
    def __init__(
        self, path: Path, fields: tuple[str, ...], flush_every: int = 20, min_free_mb: float = 50.0
    ):
        self.path, self.fields = path, fields
        self.sticky, self._last = STICKY.get(path.name, ()), {}
        self.flush_every, self.min_free_mb = flush_every, min_free_mb
        # a node restarted within its session appends: nothing recorded is lost
        fresh = not path.exists() or path.stat().st_size == 0
        self._file = path.open('a', newline='')
        self._writer = csv.DictWriter(self._file, fieldnames=fields, extrasaction='ignore')
        if fresh:
            self._writer.writeheader()
        self._file.flush()
        self.rows = self._pending = 0

    def append(self, row: dict) -> None:
        if self._file is None:
            raise RecordingError(f'{self.path} is closed')
        try:
            if (
                self._pending == 0
                and shutil.disk_usage(self.path.parent).free < self.min_free_mb * 1e6
            ):
                raise OSError(errno.ENOSPC, f'less than {self.min_free_mb} MB free')
            self._writer.writerow(self._elided({k: _compact(v) for k, v in row.items()}))
            self.rows += 1
            self._pending += 1
            if self._pending >= self.flush_every:
                self.flush()
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self.close()
                raise RecordingError(
                    f'disk full at {self.path.parent}: recording stopped after {self.rows} rows '
                    f'({exc.strerror})'
                ) from exc
            raise

    def _elided(self, row: dict) -> dict:
        """The row with each sticky column blank where it equals the last one written."""
        for name in self.sticky:
            value = str(row.get(name, ''))
            if not value and self._last.get(name):  # would read back as the value above
                raise RecordingError(f'{self.path.name}: {name} empty after {self._last[name]!r}')
            if self._last.get(name) == value:
                row[name] = ''
            self._last[name] = value
        return row

    def size(self) -> int:
        """Bytes of the file, written or buffered."""
        return self._file.tell() if self._file is not None else self.path.stat().st_size

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
            self._pending = 0

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                self._file.close()
            except OSError:
                pass
            self._file = None


def integrate_energy(times_ns: np.ndarray, watts: np.ndarray, start_ns: int, end_ns: int) -> float:
    """Joules between start and end: trapezoid over samples, interpolated at the bounds."""
    if len(times_ns) < 2 or end_ns <= start_ns:
        return float('nan')
    t = np.asarray(times_ns, np.float64)
    inside = (t > start_ns) & (t < end_ns)
    grid = np.concatenate([[start_ns], t[inside], [end_ns]])
    power = np.interp(grid, t, np.asarray(watts, np.float64))
    return float(np.sum((power[1:] + power[:-1]) / 2 * np.diff(grid)) / 1e9)


class SessionRecorder:
    """Everything the recorder node writes; ROS-free so it is tested on its own."""

    def __init__(
        self,
        run_dir: Path,
        energy_window_s: float = 10.0,
        flush_every: int = 20,
        min_free_mb: float = 50.0,
    ):
        self.run_dir = run_dir
        kw = {'flush_every': flush_every, 'min_free_mb': min_free_mb}
        self.logs = {
            'diagnoses': CsvLog(run_dir / 'diagnoses.csv', DIAGNOSIS_FIELDS, **kw),
            'alerts': CsvLog(run_dir / 'alerts.csv', ALERT_FIELDS, **kw),
            'power': CsvLog(run_dir / 'power.csv', POWER_FIELDS, **kw),
            'energy': CsvLog(run_dir / 'energy.csv', ENERGY_FIELDS, **kw),
        }
        self.window_ns = int(energy_window_s * 1e9)
        self._power_t: list[int] = []
        self._power_w: list[float] = []
        self._inferences: list[int] = []
        self._window_start: int | None = None
        self.power_source: str | None = None

    def bytes(self) -> int:
        return sum(log.size() for log in self.logs.values())

    def diagnosis(self, row: dict) -> None:
        self.logs['diagnoses'].append(row)
        self._inferences.append(int(row['received_ns']))
        self._maybe_close_window(int(row['received_ns']))

    def alert(self, row: dict) -> None:
        self.logs['alerts'].append(row)

    def power(self, received_ns: int, stamp_ns: int, source: str, watts: float, rails) -> None:
        self.power_source = source
        self.logs['power'].append(
            {
                'stamp_ns': stamp_ns,
                'received_ns': received_ns,
                'source': source,
                'total_watts': watts,
                'rails': json.dumps(rails),
            }
        )
        self._power_t.append(received_ns)
        self._power_w.append(watts)
        self._maybe_close_window(received_ns)

    def _maybe_close_window(self, now_ns: int, final: bool = False) -> None:
        if self._window_start is None:
            self._window_start = now_ns
            return
        if not final and now_ns - self._window_start < self.window_ns:
            return
        start, end = self._window_start, now_ns
        if end <= start:
            return
        n = sum(1 for t in self._inferences if start <= t < end or (final and t == end))
        if self._power_t and n:
            joules = integrate_energy(np.array(self._power_t), np.array(self._power_w), start, end)
            self.logs['energy'].append(
                {
                    'start_ns': start,
                    'end_ns': end,
                    'joules': joules,
                    'mean_watts': joules / ((end - start) / 1e9),
                    'inferences': n,
                    'joules_per_inference': joules / n,
                }
            )
        self._inferences = [t for t in self._inferences if t >= end]
        # drop power samples before the new window, keeping the last one for interpolation
        first = max(0, bisect.bisect_left(self._power_t, end) - 1)
        self._power_t, self._power_w = self._power_t[first:], self._power_w[first:]
        self._window_start = end

    def close(self) -> dict:
        if self._window_start is not None and (self._inferences or self._power_t):
            last = max(self._inferences[-1:] + self._power_t[-1:])
            try:
                self._maybe_close_window(last, final=True)
            except RecordingError:
                pass
        summary = {name: log.rows for name, log in self.logs.items()}
        summary['power_source'] = self.power_source or 'not measured on this machine'
        for log in self.logs.values():
            log.close()
        (self.run_dir / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
        return summary
