"""run.py (the main job) and result.py on the embedded default, plus bad input."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _run(args, tmp_path, ros_env, timeout=600):
    return subprocess.run(
        [sys.executable, str(REPO / 'run.py'), '--out', str(tmp_path), *args],
        capture_output=True,
        text=True,
        env=ros_env,
        timeout=timeout,
    )


@pytest.fixture(scope='module')
def main_job(tmp_path_factory):
    import random

    out = tmp_path_factory.mktemp('runs')
    env = dict(
        os.environ,
        ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
        ROS_DOMAIN_ID=str(random.randint(101, 150)),
    )
    result = _run(['--limit', '24', '--precisions', 'fp32', 'int8'], out, env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out, result


@pytest.mark.ros
@pytest.mark.slow
def test_main_job_replays_every_frame_and_matches_direct_scores(main_job):
    out, result = main_job
    assert 'precision' in result.stdout and 'not measured on this machine' in result.stdout
    (run,) = out.glob('*-main')
    rows = json.loads((run / 'results.json').read_text())['rows']
    assert [r['precision'] for r in rows] == ['fp32', 'int8']
    for row in rows:
        assert row['frames'] == 24 and row['answered'] == 24 and row['unanswered'] == 0
        assert (row['n_published'], row['n_answered'], row['n_recorded']) == (24, 24, 24)
        assert abs(row['f1'] - row['direct_f1']) < 0.005  # same engine, same frames
        assert row['energy_j_per_inference'] is None
        assert_latency_covers_the_engine(Path(row['run_dir']))
    assert rows[1]['size_ratio'] < 0.5


def assert_latency_covers_the_engine(run_dir: Path) -> None:
    """A replay latency (player publish -> recorder receipt) includes the engine call: none may
    be below it (stamps taken after publish() gave -5 ms before)."""
    engine = {
        r['stamp_ns']: float(r['inference_ms'])
        for r in csv.DictReader((run_dir / 'diagnoses.csv').open())
    }
    scored = list(csv.DictReader((run_dir / 'scored.csv').open()))
    assert len(scored) == len(engine) == 24
    assert all(float(r['latency_ms']) >= engine[r['stamp_ns']] for r in scored)


@pytest.mark.ros
@pytest.mark.slow
def test_result_writes_the_plots(main_job):
    out, _ = main_job
    (run,) = out.glob('*-main')
    result = subprocess.run(
        [sys.executable, str(REPO / 'result.py'), '--run', str(run)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for name in ('precision_table', 'roc_pr', 'reliability', 'latency_cdf', 'power'):
        assert (run / f'{name}.png').stat().st_size > 10_000


@pytest.mark.ros
def test_corrupt_bag_is_one_clear_error_and_keeps_earlier_results(main_job, tmp_path, ros_env):
    out, _ = main_job
    before = sorted(p.name for p in out.rglob('*'))
    bag = tmp_path / 'bag'
    bag.mkdir()
    (bag / 'metadata.yaml').write_text('rosbag2_bagfile_information: {version: 9}\n')
    (bag / 'bag_0.mcap').write_bytes(b'\x89MCAP0\r\n' + b'\x00' * 100)
    result = _run(['--bag', str(bag), '--precisions', 'fp32'], out, ros_env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count('error:') == 1 and 'bag' in result.stderr
    assert set(before) <= {p.name for p in out.rglob('*')}


def test_missing_model_is_one_clear_error(tmp_path, ros_env):
    result = _run(['--model-dir', str(tmp_path / 'none')], tmp_path, ros_env, timeout=120)
    assert result.returncode == 2 and 'no model at' in result.stderr


def test_result_without_runs_is_one_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / 'result.py'), '--run', str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and 'error:' in result.stderr
