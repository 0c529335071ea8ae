import csv
import errno
import json

import numpy as np
import pytest
from skin_screening.core.recording import (
    CsvLog,
    RecordingError,
    SessionRecorder,
    integrate_energy,
)


def test_trapezoid_energy_with_interpolated_bounds():
    t = np.array([0, 1, 2, 3]) * 1_000_000_000
    w = np.array([2.0, 4.0, 4.0, 2.0])
    assert integrate_energy(t, w, 0, 3_000_000_000) == pytest.approx(3 + 4 + 3)
    assert integrate_energy(t, w, 500_000_000, 1_000_000_000) == pytest.approx(0.5 * 3.5)


def test_energy_per_inference_over_windows(tmp_path):
    rec = SessionRecorder(tmp_path, energy_window_s=1.0)
    for i in range(31):  # 5 W for 3 s, 10 inferences per second
        t = i * 100_000_000
        rec.power(t, t, 'rapl', 5.0, [])
        rec.diagnosis({'stamp_ns': t, 'received_ns': t})
    summary = rec.close()
    rows = list(csv.DictReader((tmp_path / 'energy.csv').open()))
    assert summary['diagnoses'] == 31 and len(rows) == 3
    assert all(float(r['joules_per_inference']) == pytest.approx(0.5) for r in rows)
    assert json.loads((tmp_path / 'summary.json').read_text())['power_source'] == 'rapl'


def test_every_row_is_on_disk_after_close(tmp_path):
    log = CsvLog(tmp_path / 'x.csv', ('a', 'b'), flush_every=1000)
    for i in range(55):
        log.append({'a': i, 'b': 'x'})
    log.close()
    assert len((tmp_path / 'x.csv').read_text().splitlines()) == 56


def test_full_disk_stops_recording_and_keeps_what_was_written(tmp_path, monkeypatch):
    log = CsvLog(tmp_path / 'x.csv', ('a',), flush_every=1)
    log.append({'a': 1})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(log._writer, 'writerow', full)
    with pytest.raises(RecordingError, match='disk full.*after 1 rows'):
        log.append({'a': 2})
    assert (tmp_path / 'x.csv').read_text().splitlines() == ['a', '1']
    with pytest.raises(RecordingError, match='closed'):
        log.append({'a': 3})
