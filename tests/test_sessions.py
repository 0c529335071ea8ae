"""Session folders on the wearable: one per launch, owner-only, removed after retention."""

import os
import subprocess
import sys

from skin_screening.core.recording import SessionRecorder
from skin_screening.core.sessions import (
    DAY_S,
    MARKER,
    disk_bytes,
    expire_sessions,
    launch_name,
    session_dir,
)

from tests.nodes_helpers import owner_only_modes


def _aged(folder, days, now):
    for path in [*folder.rglob('*'), folder]:
        os.utime(path, (now - days * DAY_S, now - days * DAY_S))


def test_retention_removes_old_sessions_never_the_open_one_nor_other_folders(tmp_path):
    now = 1_800_000_000.0
    old, recent, current = (session_dir(tmp_path, n, n) for n in ('old', 'recent', 'current'))
    for folder in (old, recent, current):
        (folder / 'diagnoses.csv').write_text('x\n')
    stray = tmp_path / 'model'  # not a session (no marker): never touched
    stray.mkdir()
    _aged(old, 31, now)
    _aged(recent, 29, now)
    _aged(current, 400, now)  # the open session, however old its files
    _aged(stray, 400, now)
    assert expire_sessions(tmp_path, 30, keep=current, now=now) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == ['current', 'model', 'recent']
    assert expire_sessions(tmp_path, 0, keep=current, now=now + 1e9) == []  # 0: kept forever
    # one recent file keeps a session (its last write counts, not its creation)
    (recent / 'alerts.csv').write_text('y\n')
    os.utime(recent / 'alerts.csv', (now, now))
    assert expire_sessions(tmp_path, 30, keep=current, now=now + 2 * DAY_S) == []


def test_two_nodes_expiring_the_same_sessions_at_once_both_finish(tmp_path):
    """The recorder and the findings node run retention at the same start."""
    import threading

    now = 1_800_000_000.0
    for i in range(40):
        folder = session_dir(tmp_path, 'r', f's{i}')
        for j in range(20):
            (folder / f'{j}.jpg').write_bytes(b'x' * 100)
        _aged(folder, 60, now)
    current = session_dir(tmp_path, 'r', 'current')
    errors, removed = [], []

    def expire():
        try:
            removed.append(expire_sessions(tmp_path, 30, keep=current, now=now))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=expire) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and [p.name for p in tmp_path.iterdir()] == ['current']
    marker = current / MARKER
    assert disk_bytes([tmp_path / 's0' / '0.jpg', marker]) == marker.stat().st_size  # gone: 0


def test_the_nodes_of_one_launch_share_a_session_folder():
    parent = launch_name('wearable-int8')
    assert parent == launch_name('wearable-int8', os.getppid())
    code = 'from skin_screening.core.sessions import launch_name; print(launch_name("r"))'
    children = {
        subprocess.run([sys.executable, '-c', code], capture_output=True, text=True).stdout
        for _ in range(2)
    }
    assert children == {launch_name('r', os.getpid()) + '\n'}  # both children: this process's
    assert parent != launch_name('wearable-int8', os.getpid())


def test_session_files_are_owner_only_and_a_restarted_recorder_appends(tmp_path):
    code = (
        'import sys; from pathlib import Path\n'
        'from skin_screening.core.sessions import owner_only, session_dir\n'
        'from skin_screening.core.recording import SessionRecorder\n'
        'owner_only()\n'
        'rec = SessionRecorder(session_dir(Path(sys.argv[1]), "r", "s"))\n'
        'p = float(__import__("numpy").float32(0.1))  # as a Diagnosis carries it\n'
        'rec.diagnosis({"stamp_ns": 1, "received_ns": 2, "probability": p})\n'
        'rec.close()\n'
    )
    for _ in range(2):  # the second: the node restarted within its session
        subprocess.run([sys.executable, '-c', code, str(tmp_path)], check=True)
    folder = tmp_path / 's'
    assert (folder / MARKER).is_file() and owner_only_modes(folder) == {}
    lines = (folder / 'diagnoses.csv').read_text().splitlines()
    assert lines[0].startswith('stamp_ns,') and len(lines) == 3  # one header, both rows kept
    assert lines[1].split(',')[lines[0].split(',').index('probability')] == '0.100000001'
    again = SessionRecorder(folder)
    assert again.bytes() == sum(f.stat().st_size for f in folder.glob('*.csv'))
    again.close()
