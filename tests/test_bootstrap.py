"""Environment bootstrap: idempotent, and one clear message when the toolchain is missing."""

import subprocess
import sys
import time

from skin_screening.bootstrap import ensure_messages


def test_messages_import_and_rebuild_is_skipped_when_current():
    start = time.perf_counter()
    ensure_messages()
    assert time.perf_counter() - start < 2.0
    from skin_screening_msgs.msg import Alert, Diagnosis, GroundTruth, PowerSample

    assert (Diagnosis.OTHER, Diagnosis.SUSPICIOUS, Diagnosis.REFER) == (0, 1, 2)
    assert Alert.CLEAR == 0 and GroundTruth.SKIN_CANCER == 1 and PowerSample().rails == []


def test_missing_cmake_and_compiler_give_one_clear_message(tmp_path):
    env = {'PATH': str(tmp_path), 'HOME': str(tmp_path)}  # no cmake, no cc/c++ on PATH
    result = subprocess.run(
        [sys.executable, '-m', 'skin_screening.bootstrap', '--force'],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert 'missing cmake, a C compiler, a C++ compiler' in result.stderr
    assert 'apt-get install cmake g++' in result.stderr
    assert result.stderr.count('error:') == 1
