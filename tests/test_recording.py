import csv
import errno
import json

import numpy as np
import pytest
from skin_screening.core.recording import (
    DIAGNOSIS_FIELDS,
    CsvLog,
    RecordingError,
    SessionRecorder,
    integrate_energy,
    read_rows,
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


def _diagnosis(i: int, **changed) -> dict:
    row = {
        'stamp_ns': 1_700_000_000_000_000_000 + i * 33_333_333,
        'frame_id': 'wearable_camera',
        'received_ns': 1_796_000_000_000_000_000 + i * 33_333_333,
        'decision': 0,
        'label': 'other',
        'unassessable_reason': '',
        'probability': 0.1 + i / 1000,
        'threshold': 0.148440272,
        'operating_point': 'clinical-screening',
        'entropy': 0.421967089,
        'epistemic': float('nan'),
        'ambiguity': 0.0330128707,
        'referral_score': 'ambiguity',
        'referral_threshold': float('nan'),
        'precision': 'fp32',
        'backend': 'onnxruntime',
        'model_id': 'mobilenetv2-a1.0-clinical@7fdbcc63',
        'inference_ms': 11.8920174,
        'latency_ms': 15.84902,
    }
    return row | changed


def test_rarely_changing_columns_are_written_when_they_change_and_read_back_in_full(tmp_path):
    """The model, precision, point and thresholds are blank while they equal the row above;
    read_rows() gives every row in full, a switch of precision included, and a node restarted in
    its session writes its first row in full again (its file read alone still resolves)."""
    path = tmp_path / 'diagnoses.csv'
    written = [_diagnosis(i) for i in range(5)] + [
        _diagnosis(i, precision='int8', model_id='m@2', threshold=0.2) for i in range(5, 9)
    ]
    log = CsvLog(path, DIAGNOSIS_FIELDS)
    for row in written[:7]:
        log.append(row)
    log.close()
    log = CsvLog(path, DIAGNOSIS_FIELDS)  # restarted
    for row in written[7:]:
        log.append(row)
    log.close()
    lines = path.read_text().splitlines()
    assert lines[2].count(',,,') >= 1 and 'fp32' not in lines[2] and 'int8' in lines[6]
    assert 'int8' not in lines[7] and 'int8' in lines[8]  # the restart's first row is whole
    rows = read_rows(path)
    assert [r['precision'] for r in rows] == ['fp32'] * 5 + ['int8'] * 4
    assert [r['model_id'] for r in rows][4:6] == ['mobilenetv2-a1.0-clinical@7fdbcc63', 'm@2']
    assert [float(r['threshold']) for r in rows][4:6] == [0.148440272, 0.2]
    assert all(r['frame_id'] == 'wearable_camera' for r in rows)
    assert rows[1]['unassessable_reason'] == ''  # not a sticky column: stays as written
    assert max(len(line) for line in lines[2:6]) + 1 <= 140  # bytes per row, vs 220 in full


def test_a_rarely_changing_column_cannot_turn_empty(tmp_path):
    log = CsvLog(tmp_path / 'diagnoses.csv', DIAGNOSIS_FIELDS)
    log.append(_diagnosis(0))
    with pytest.raises(RecordingError, match="operating_point empty after 'clinical-screening'"):
        log.append(_diagnosis(1, operating_point=''))
    log.close()
