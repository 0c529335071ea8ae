"""The findings node (a downstream consumer of the alerts) and the clinician's session report:
the evidence store alone, then a real replayed session read in a real browser."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from skin_screening.core.findings import FindingsStore
from skin_screening.core.model_card import DEFAULT_MODEL

from tests.browser import chromium, load, photo_tiles, screenshot
from tests.conftest import REPO, result_py
from tests.nodes_helpers import owner_only_modes

JPEG = b'\xff\xd8' + bytes(1000)  # 1 kB stands in for a frame in the store tests


def test_an_episode_keeps_its_most_probable_frames(tmp_path):
    store = FindingsStore(tmp_path, max_bytes=10**6, frames_per_finding=2)
    store.start(100, 1, 'suspicious')
    for stamp, p in [(101, 0.7), (102, 0.9), (103, 0.6), (104, 0.95)]:
        store.offer(stamp, p, {'probability': p}, JPEG)
    assert store.attach(104, '.cam.jpg', JPEG) and not store.attach(101, '.cam.jpg', JPEG)
    episode = store.end(105)
    assert episode.kept == {102: 0.9, 104: 0.95} and episode.frames_seen == 4
    assert sorted(p.name for p in episode.folder.iterdir()) == [
        '102.jpg',
        '102.json',
        '104.cam.jpg',
        '104.jpg',
        '104.json',
        'episode.json',
    ]
    summary = json.loads((episode.folder / 'episode.json').read_text())
    assert summary['max_probability'] == 0.95 and summary['end_ns'] == 105


def test_frames_after_the_clear_are_not_the_episodes_evidence(tmp_path):
    """Topics are not ordered: a Diagnosis stamped after the clearing alert may be processed
    before it."""
    store = FindingsStore(tmp_path, max_bytes=10**6)
    store.start(100, 1, '')
    store.offer(101, 0.9, {}, JPEG)
    store.offer(110, 0.2, {}, JPEG)
    episode = store.end(105)
    assert episode.kept == {101: 0.9} and not (episode.folder / '110.jpg').exists()


def test_the_disk_bound_drops_old_low_risk_images_first_never_the_one_written(tmp_path):
    store = FindingsStore(tmp_path, max_bytes=5500, frames_per_finding=3)
    on_disk, write = [], store._write

    def write_and_measure(path, data):  # the bound holds after every single file written
        write(path, data)
        on_disk.append(sum(f.stat().st_size for f in tmp_path.rglob('*') if f.is_file()))

    store._write = write_and_measure
    for start, p in [(100, 0.65), (200, 0.99)]:  # a low-risk, then a high-risk finding
        store.start(start, 1, '')
        for i in range(3):
            store.offer(start + i + 1, p - i / 100, {}, JPEG)
        store.end(start + 10)
    store.start(300, 2, '')
    store.offer(301, 0.5, {}, JPEG)
    assert max(on_disk) <= 5500 == store.max_bytes and len(on_disk) > 10
    assert store.bytes == sum(f.stat().st_size for f in tmp_path.rglob('*') if f.is_file())
    low, high = store.closed
    assert low.dropped == 3 and 1 <= high.dropped < 3  # all of the low-risk one went first
    assert (store.open.folder / '301.jpg').is_file()  # just written: kept
    assert all((e.folder / 'episode.json').is_file() for e in store.closed)


def test_a_restarted_store_counts_the_episodes_on_disk(tmp_path):
    first = FindingsStore(tmp_path, max_bytes=10**6)
    first.start(100, 2, 'refer')
    first.offer(101, 0.4, {}, JPEG)
    first.end(110)
    again = FindingsStore(tmp_path, max_bytes=10**6)
    assert [e.level for e in again.closed] == ['refer'] and again.closed[0].kept == {101: 0.4}
    assert again.bytes == first.bytes


def _disk(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob('*') if f.is_file())


def test_one_budget_covers_the_growing_csvs_and_a_write_without_room_is_refused(tmp_path):
    """The recorder's CSV grows beside the store (another process): the store makes room for
    it, the total stays within the budget, and once the CSV alone fills it the evidence is
    refused and counted, every finding keeping its summary."""
    session = tmp_path / 'S'
    (session / 'findings').mkdir(parents=True)
    (tmp_path / 'old' / 'findings').mkdir(parents=True)  # an earlier session's evidence
    old = FindingsStore(tmp_path / 'old' / 'findings', max_bytes=10**6)
    old.start(10, 1, '')
    old.offer(11, 0.51, {}, JPEG)  # low risk, and the oldest
    old.end(12)
    csv_file = session / 'diagnoses.csv'
    csv_file.write_bytes(b'')
    budget = 20_000
    store = FindingsStore(session / 'findings', budget, 2, budget_root=tmp_path, watch=session)
    peaks = []
    for i in range(40):
        with csv_file.open('ab') as f:  # the recorder, a row per frame
            f.write(b'x' * 250)
        store.tick()
        if i % 4 == 0:
            store.start(1000 * i, 1, '')
        store.offer(1000 * i + 1, 0.5 + i / 100, {'i': i}, JPEG, JPEG)
        if i % 4 == 3:
            store.end(1000 * i + 2)
        peaks.append(_disk(tmp_path))
        assert store.bytes == peaks[-1]  # the count is what is on disk
    assert max(peaks) <= budget and store.refused == 0
    assert not list((tmp_path / 'old').rglob('*.jpg'))  # the earlier session's images went first
    assert (tmp_path / 'old' / 'findings' / '10-suspicious' / 'episode.json').is_file()
    csv_file.write_bytes(b'x' * budget)  # the CSV alone fills the budget
    store.start(99_000, 2, '')
    assert not store.offer(99_001, 0.9, {}, JPEG) or store.refused > 0
    assert store.refused > 0 and store.refused_bytes > 0
    assert not store.tick()  # no room can be made: the node says so (WARN)
    summaries = list(tmp_path.glob('*/findings/*/episode.json'))
    assert len(summaries) == 1 + 11  # every finding listed, even with no room for evidence


@pytest.fixture(scope='module')
def session(tmp_path_factory, sample_frames):
    """A real replay through the real nodes (findings included) of a bag in which the camera
    dwells 20 frames on each of 4 lesions: the two the model finds most and least suspicious."""
    import os

    from skin_screening.core.bags import LabelledFrame, write_bag
    from skin_screening.core.classifier import Classifier
    from skin_screening.core.dwell import dwell_frames
    from skin_screening.launching import ros_environment
    from skin_screening.replay import replay

    from tests.conftest import _domains

    model = REPO / DEFAULT_MODEL
    frames, y = sample_frames
    clf = Classifier(model, 'fp32', 'onnxruntime')
    p = np.concatenate(
        [clf.classify(frames[i : i + 16])[0].probability for i in range(0, len(frames), 16)]
    )
    clf.close()
    low, high = np.argsort(p)[:2], np.argsort(p)[-2:]
    order = [low[0], high[0], low[1], high[1]]
    lesions = [LabelledFrame(frames[i], int(y[i]), 'x', f'img{i}', f'lesion{i}') for i in order]
    root = tmp_path_factory.mktemp('session')
    write_bag(root / 'bag', dwell_frames(lesions, 20))
    env = ros_environment(os.environ, domain=next(_domains))
    overlays = {'inference': {'publish_cam': True}}  # CAM overlays on diagnosis/cam
    run_dir = replay(
        root / 'bag', model, 'fp32', 'onnxruntime', root / 'out', env=env, params=overlays
    )
    return run_dir


@pytest.mark.ros
@pytest.mark.slow
def test_a_replayed_session_keeps_the_evidence_of_each_alert(session):
    diagnoses = list(csv.DictReader((session / 'diagnoses.csv').open()))
    alerts = list(csv.DictReader((session / 'alerts.csv').open()))
    assert len(diagnoses) == 80 and sum(a['level'] != '0' for a in alerts) >= 2
    assert owner_only_modes(session) == {}  # skin photographs: the owner's alone
    episodes = [json.loads(p.read_text()) for p in sorted(session.glob('findings/*/episode.json'))]
    assert len(episodes) == sum(a['level'] != '0' for a in alerts)
    by_stamp = {int(d['stamp_ns']): float(d['probability']) for d in diagnoses}
    for episode in episodes:
        kept = {int(s): p for s, p in episode['kept'].items()}
        assert len(kept) == 3 and all(by_stamp[s] == pytest.approx(p) for s, p in kept.items())
        folder = session / 'findings' / episode['folder']
        assert all((folder / f'{s}.jpg').stat().st_size > 5000 for s in kept)  # real frames
        assert any((folder / f'{s}.cam.jpg').is_file() for s in kept)  # late overlays too
        record = json.loads((folder / f'{min(kept)}.json').read_text())
        assert (
            record['model_id'].startswith(f'{Path(DEFAULT_MODEL).name}@') and record['has_frame']
        )


@pytest.mark.ros
@pytest.mark.slow
def test_the_report_is_one_offline_page_riskiest_finding_first(session):
    from skin_screening.core.session_report import build_report

    page = build_report(session).read_text()
    assert 'http://' not in page and 'https://' not in page and '<script' not in page
    assert page.count('<section class="card') >= 2
    assert page.count('data:image/jpeg;base64,') >= 6 and 'data:image/png;base64,' in page
    probabilities = [float(x) for x in re.findall(r'max p = ([0-9.]+)', page)]
    assert probabilities == sorted(probabilities, reverse=True)


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason='chromium not installed (.ci/run installs it)')
def test_the_report_in_a_real_browser(session, tmp_path):
    from skin_screening.core.session_report import build_report

    page = build_report(session, out=tmp_path / 'report.html')
    dom, errors = load(page)
    assert not errors, errors
    assert 'F1: suspicious' in dom and 'Findings, riskiest first' in dom
    shot = screenshot(page, tmp_path / 'report.png')
    assert photo_tiles(shot) >= 20  # the timeline's colours aside, the lesions are visible


@pytest.mark.ros
def test_the_readme_consumer_gets_the_current_alert_when_it_starts_late(ros_env, tmp_path):
    import subprocess
    import sys
    import textwrap
    import time

    from skin_screening.nodes.common import alert_qos
    from skin_screening_msgs.msg import Alert

    from tests.nodes_helpers import probe_node, stop, wait_for

    example = REPO / 'examples' / 'alert_listener.py'
    shown = textwrap.indent(example.read_text().strip(), '    ')
    assert shown in (REPO / 'README.md').read_text()  # the README shows the file as it is
    with probe_node() as node:
        pub = node.create_publisher(Alert, 'alert', alert_qos())
        alert = Alert(level=Alert.SUSPICIOUS, probability=0.81, frames=15, text='raised')
        alert.header.stamp.sec = 42
        pub.publish(alert)  # raised BEFORE the consumer exists
        time.sleep(0.5)
        log = tmp_path / 'listener.log'
        proc = subprocess.Popen(
            [sys.executable, str(example)],
            env=ros_env,
            stdout=log.open('w'),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: 'SUSPICIOUS at 42.000' in log.read_text(), 30, 'the latched alert')
        finally:
            stop(proc)
    assert 'p=0.81 over 15 frames (raised)' in log.read_text()


def test_a_wrong_session_folder_is_one_clear_error(tmp_path):
    def session(folder):
        done = result_py('--session', folder)
        return done.returncode, done.stderr.strip()

    assert session(tmp_path / 'nope') == (
        2,
        f'error: {tmp_path / "nope"} holds no diagnoses.csv: not a recorder run folder',
    )
    (tmp_path / 'diagnoses.csv').write_text('x\n1\n')  # not the recorder's file
    code, error = session(tmp_path)
    assert code == 2 and "is not the recorder's (missing columns:" in error
    assert len(error.splitlines()) == 1 and not (tmp_path / 'report.html').exists()
