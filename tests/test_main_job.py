"""run.py (the main job) and result.py on the embedded default, plus bad input."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MODEL, REPO, SAMPLES, result_py
from tests.power_tree import alternating_current, ina3221_tree


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
    # Power from a fixture INA3221 tree whose input-rail current alternates 1.0 / 1.4 A at 5 V
    # (5 W / 7 W): the same on every host, and energy must come out of the whole chain.
    sysfs = ina3221_tree(tmp_path_factory.mktemp('sysfs'), [('VDD_IN', 5000, 1000)])
    args = ['--limit', '24', '--precisions', 'fp32', 'int8', '--bag-rate-hz', '20']
    args += ['--power-source', 'ina3221', '--sysfs-root', str(sysfs), '--rate', '1']
    with alternating_current(sysfs, 1, (1000, 1400), 0.25):
        result = _run(args, out, env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (run,) = out.glob('*-main')  # taken now: other tests may add runs under `out` later
    return out, result, run


@pytest.mark.ros
@pytest.mark.slow
def test_main_job_replays_every_frame_and_matches_direct_scores(main_job):
    _, result, run = main_job
    assert 'precision' in result.stdout
    rows = json.loads((run / 'results.json').read_text())['rows']
    assert [r['precision'] for r in rows] == ['fp32', 'int8']
    for row in rows:
        assert row['frames'] == 24 and row['answered'] == 24 and row['unanswered'] == 0
        assert (row['n_published'], row['n_answered'], row['n_recorded']) == (24, 24, 24)
        assert_replay_matches_direct_per_frame(Path(row['run_dir']), row['precision'])
        assert row['energy_j_per_inference'] == pytest.approx(energy_by_hand(Path(row['run_dir'])))
        assert_latency_covers_the_engine(Path(row['run_dir']))
    assert rows[1]['size_ratio'] < 0.5


def energy_by_hand(run_dir: Path) -> float:
    """Joules per inference from the recorded power samples: trapezoids between consecutive
    samples over each energy window, the window's ends interpolated linearly."""
    power = [
        (int(r['received_ns']), float(r['total_watts']))
        for r in csv.DictReader((run_dir / 'power.csv').open())
    ]
    assert {w for _, w in power} <= {5.0, 7.0} and len({w for _, w in power}) == 2
    joules = inferences = 0.0
    for window in csv.DictReader((run_dir / 'energy.csv').open()):
        start, end = int(window['start_ns']), int(window['end_ns'])

        def at(t):
            before = max((p for p in power if p[0] <= t), default=power[0])
            after = min((p for p in power if p[0] >= t), default=power[-1])
            if after[0] == before[0]:
                return before[1]
            return before[1] + (after[1] - before[1]) * (t - before[0]) / (after[0] - before[0])

        points = [(start, at(start))] + [p for p in power if start < p[0] < end] + [(end, at(end))]
        for (t0, w0), (t1, w1) in zip(points, points[1:]):
            joules += (w0 + w1) / 2 * (t1 - t0) / 1e9
        inferences += int(window['inferences'])
    assert inferences == 24
    return joules / inferences


def assert_replay_matches_direct_per_frame(run_dir: Path, precision: str) -> None:
    """Each frame's replayed probability equals the same engine's, run here on the same image."""
    from skin_screening.core.classifier import Classifier
    from skin_screening.core.preprocess import load_rgb

    rows = list(csv.DictReader((SAMPLES / 'labels.csv').open()))[:24]
    direct = Classifier(MODEL, precision).classify([load_rgb(SAMPLES / r['path']) for r in rows])
    expected = dict(zip((r['image_id'] for r in rows), direct[0].probability))
    scored = {
        r['image_id']: float(r['probability'])
        for r in csv.DictReader((run_dir / 'scored.csv').open())
    }
    assert scored.keys() == expected.keys()
    assert all(abs(scored[k] - expected[k]) < 1e-5 for k in expected), precision


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
    _, _, run = main_job
    result = result_py('--run', run, timeout=300)
    assert result.returncode == 0, result.stderr
    import matplotlib.image

    for name in ('precision_table', 'roc_pr', 'reliability', 'latency_cdf', 'power'):
        pixels = matplotlib.image.imread(run / f'{name}.png')[..., :3]
        assert min(pixels.shape[:2]) >= 300, name  # a real figure, not a stub
        ink = (pixels < 0.9).any(axis=2).mean()  # share of non-white pixels
        assert 0.01 < ink < 0.9, (name, ink)  # something drawn, not a blank or solid image
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, name  # lines, text, colour


@pytest.mark.ros
def test_corrupt_bag_is_one_clear_error_and_keeps_earlier_results(main_job, tmp_path, ros_env):
    out, _, run = main_job
    before = {p: p.read_bytes() for p in run.rglob('*') if p.is_file()}
    bag = tmp_path / 'bag'
    bag.mkdir()
    (bag / 'metadata.yaml').write_text('rosbag2_bagfile_information: {version: 9}\n')
    (bag / 'bag_0.mcap').write_bytes(b'\x89MCAP0\r\n' + b'\x00' * 100)
    result = _run(['--bag', str(bag), '--precisions', 'fp32'], out, ros_env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count('error:') == 1 and 'bag' in result.stderr
    assert {p: p.read_bytes() for p in run.rglob('*') if p.is_file()} == before


def test_missing_model_is_one_clear_error(tmp_path, ros_env):
    result = _run(['--model-dir', str(tmp_path / 'none')], tmp_path, ros_env, timeout=120)
    assert result.returncode == 2 and 'no model at' in result.stderr


def test_result_without_runs_is_one_clear_error(tmp_path):
    result = result_py('--run', tmp_path)
    assert result.returncode == 2 and 'error:' in result.stderr


def test_images_of_lesions_the_model_was_trained_on_are_refused(ham, tmp_path, ros_env):
    result = _run(
        ['--data', str(ham), '--format', 'ham10000', '--limit', '8'], tmp_path, ros_env, 300
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert 'show lesions the model was trained on; pass --heldout-only' in result.stderr


def test_main_job_ends_with_the_path_of_each_replay_session_report(main_job):
    _, result, run = main_job
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith('session reports (open in a browser): ')
    reports = [Path(p) for p in line.split(': ', 1)[1].split(', ')]
    assert len(reports) == 2 and all(p.is_file() for p in reports)
    assert all(Path(p).parent.parent.parent == run for p in reports)
    assert 'Skin screening session' in reports[0].read_text()


@pytest.mark.ros
@pytest.mark.slow
def test_clinical_photos_replay_at_the_clinical_point_beside_dermoscopy(main_job, pad, ros_env):
    """run.py on the clinical photographs decides at the card's clinical point (its own
    calibration), reports that domain's points with patient-bootstrap CIs, and result.py then
    draws both domains side by side."""
    out, _, dermoscopic = main_job
    args = ['--data', str(pad), '--format', 'pad_ufes_20', '--heldout-only', '--limit', '16']
    result = _run([*args, '--precisions', 'fp32', 'int8', '--bag-rate-hz', '20'], out, ros_env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert 'operating point: clinical-screening' in result.stdout
    (run,) = set(out.glob('*-main')) - {dermoscopic}
    results = json.loads((run / 'results.json').read_text())
    assert (results['domain'], results['operating_point']) == ('clinical', 'clinical-screening')
    assert all(r['operating_point'] == 'clinical-screening' for r in results['rows'])
    points = {r['operating_point'] for r in results['operating_points']}
    assert points <= {'clinical-screening', 'clinical-melanoma', 'clinical-balanced'}
    assert 'clinical-screening' in points
    assert json.loads((dermoscopic / 'results.json').read_text())['domain'] == 'dermoscopic'
    plotted = result_py('--run', run, timeout=300)
    assert plotted.returncode == 0, plotted.stderr
    assert str(run / 'domains.png') in plotted.stdout
    assert (run / 'domains.png').stat().st_size > 20_000
