"""Session folders on the wearable: one per launch, owner-only, removed after the retention
period (ROS-free).

Every node of one `ros2 launch` (the recorder's CSVs, the findings node's evidence) writes into
the same folder, <output_dir>/<launch start, UTC>-<launch pid>-<run name>/, named from the
launching process that they share; the `session` parameter names it explicitly. A session.json
marks the folder as a session: retention never touches a folder without one.

Skin photographs are personal data: the nodes set umask 077 (files 0600, folders 0700), as the
systemd unit does (UMask=0077).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path

MARKER = 'session.json'
DAY_S = 86400.0


def owner_only() -> None:
    """Files this process creates from now on: readable by their owner only."""
    os.umask(0o077)


def _process_start(pid: int) -> float | None:
    """Unix time at which process `pid` started (Linux /proc), or None."""
    try:
        fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime, counted after the command name
        boot = next(
            int(line.split()[1])
            for line in Path('/proc/stat').read_text().splitlines()
            if line.startswith('btime ')
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf('SC_CLK_TCK')


def utc_stamp() -> str:
    """Now, UTC, to the microsecond: a session name that sorts by time."""
    return datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S.%fZ')


def launch_name(run_name: str, pid: int | None = None) -> str:
    """The session folder's name for the nodes started by process `pid` (default: this one's
    parent, the launch): the same in every node of that launch."""
    pid = os.getppid() if pid is None else pid
    start = _process_start(pid)
    if start is None:  # no /proc: this process alone
        pid, start = os.getpid(), time.time()
    stamp = datetime.fromtimestamp(int(start), timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    return f'{stamp}-{pid}-{run_name}'


def session_dir(output_dir: str | Path, run_name: str, session: str = '') -> Path:
    """<output_dir>/<session>/, made owner-only (with its marker) if new."""
    root = Path(output_dir)
    folder = root / (session or launch_name(run_name))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    marker = folder / MARKER
    if not marker.exists():
        info = {'name': folder.name, 'run_name': run_name, 'created': time.time()}
        try:
            with marker.open('x') as f:  # the first node of the launch writes it
                json.dump(info, f)
        except FileExistsError:
            pass
    return folder


def _stats(paths: Iterable[Path]) -> Iterator[os.stat_result]:
    """The stat of each path that is a file, skipping those removed meanwhile (the recorder and
    the findings node both run retention, at the same start)."""
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            yield st


def disk_bytes(paths: Iterable[Path]) -> int:
    """Bytes of the files among `paths` (e.g. root.rglob('*')), files removed meanwhile aside."""
    return sum(st.st_size for st in _stats(paths))


def last_write(folder: Path) -> float:
    """The newest modification time of anything in the folder."""
    return max([folder.stat().st_mtime, *(st.st_mtime for st in _stats(folder.rglob('*')))])


def expire_sessions(
    output_dir: str | Path, days: float, keep: Path, now: float | None = None
) -> list[Path]:
    """Remove every session folder under output_dir last written more than `days` ago, never
    `keep` (the open session); returns those removed. days <= 0 keeps everything."""
    if days <= 0:
        return []
    now = time.time() if now is None else now
    removed = []
    for folder in sorted(Path(output_dir).iterdir()):
        if folder.is_symlink() or not (folder / MARKER).is_file():
            continue
        if folder.resolve() == Path(keep).resolve():
            continue
        try:
            expired = now - last_write(folder) > days * DAY_S
        except FileNotFoundError:  # removed meanwhile by the other node
            continue
        if expired:
            while folder.exists():  # the other node may remove parts of it at the same time
                try:
                    shutil.rmtree(folder)
                except FileNotFoundError:
                    continue
            removed.append(folder)
    return removed
