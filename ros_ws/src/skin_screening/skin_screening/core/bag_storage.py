"""The messages stored in a rosbag2, read as far as the storage lets us trust them.

- mcap: always our own forward reader (core/mcap_salvage.py): every chunk's CRC checked where
  the file has one, a failed chunk skipped (its messages named from the message indexes), a
  file cut short or with a damaged length read up to the damage. rosbags would replay a
  damaged chunk without a CRC as intact, and stops at the first one with a bad CRC.
- sqlite3: rosbags, after `PRAGMA integrity_check` (the B-tree structure: a torn page, a broken
  index). SQLite keeps no checksum of a row's contents, so a flipped byte inside a message blob
  is NOT detectable here: it shows only if the message no longer deserializes or decodes.
A damaged or missing metadata.yaml is noted, and the storage file beside it is read instead.
Nothing here raises for damage found while reading: it ends up in `problems` (why) and `lost`
(topic -> log times of messages known to be lost); BagError only when nothing can be opened.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STORAGE_SUFFIXES = ('.mcap', '.db3')


GROUND_TRUTH = 'skin_screening_msgs/msg/GroundTruth'


def typestore() -> Any:
    """ROS 2 Humble types (wire-compatible with Jazzy/Kilted for these) + GroundTruth."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from ..bootstrap import msg_source_dir

    store = get_typestore(Stores.ROS2_HUMBLE)
    text = (msg_source_dir() / 'msg' / 'GroundTruth.msg').read_text()
    store.register(get_types_from_msg(text, GROUND_TRUTH))
    return store


class BagError(RuntimeError):
    """A bag that cannot be read or written (missing, corrupt, truncated, no image topic)."""


@dataclass(frozen=True)
class RawMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    raw: bytes  # CDR bytes as stored


@dataclass
class Source:
    """One bag's storage files; messages() may be called more than once (each call re-reads
    the files and refills `problems` and `lost`)."""

    path: Path  # what resolve() returned: a bag folder or a storage file
    files: list[Path]
    counts: dict[str, int] = field(default_factory=dict)  # topic -> messages (metadata/summary)
    notes: list[str] = field(default_factory=list)  # found before reading (metadata, integrity)
    problems: list[str] = field(default_factory=list)
    lost: dict[str, list[int]] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)  # topic -> type, messages or not

    @property
    def storage(self) -> str:
        return 'mcap' if self.files[0].suffix == '.mcap' else 'sqlite3'

    def messages(self, keep=lambda topic, msgtype: True) -> Iterator[RawMessage]:
        self.problems, self.lost, self.topics = list(self.notes), {}, {}
        reader = self._mcap if self.storage == 'mcap' else self._sqlite3
        for message in reader():
            if keep(message.topic, message.msgtype):
                yield message

    def _mcap(self) -> Iterator[RawMessage]:
        from .mcap_salvage import Salvage

        for path in self.files:
            salvage = Salvage(path)
            for m in salvage.messages():
                yield RawMessage(m.topic, m.msgtype, m.log_time_ns, m.data)
            where = f'{path.name}: ' if len(self.files) > 1 else ''
            self.problems += [where + p for p in salvage.problems()]
            for topic, times in salvage.lost.items():
                self.lost.setdefault(topic, []).extend(times)
            for topic, sid in salvage.channels.values():
                self.topics.setdefault(topic, salvage.schemas.get(sid, ''))
            self._summary_counts(salvage.counts)
            if salvage.damage:
                return  # a later file of a split bag cannot be trusted to follow on

    def _summary_counts(self, counts: dict[str, int]) -> None:
        """The storage's own message counts (MCAP summary, SQLite rows) over metadata.yaml's,
        where they disagree (a damaged or hand-edited metadata.yaml)."""
        for topic, n in counts.items():
            claimed = self.counts.get(topic, n)
            if claimed != n:
                self.problems.append(
                    f'metadata.yaml says {claimed} messages of {topic}, the storage file {n}'
                )
            self.counts[topic] = n

    def _sqlite3(self) -> Iterator[RawMessage]:
        from rosbags.highlevel import AnyReader

        reader = AnyReader([self.path], default_typestore=typestore())
        try:
            reader.open()
        except Exception as exc:  # rosbags raises several error types (AnyReaderError, ...)
            raise BagError(
                f'cannot open bag {self.path} (corrupt or not a rosbag2?): {exc}'
            ) from exc
        self.topics = {c.topic: c.msgtype for c in reader.connections}
        self._summary_counts(_row_counts(self.files))
        n = 0
        try:
            for conn, t, raw in reader.messages():
                yield RawMessage(conn.topic, conn.msgtype, t, bytes(raw))
                n += 1
        except Exception as exc:  # noqa: BLE001 - sqlite3/rosbags errors mid-file: damage
            self.problems.append(f'reading stops after {n} messages: {exc}')
        finally:
            reader.close()


def resolve(path: str | Path) -> Path:
    """What to open for `path`: a rosbag2 folder, or its one storage file when metadata.yaml is
    missing (read directly, as `ros2 bag reindex` would), or a .mcap/.db3 file given directly."""
    path = Path(path)
    if not path.exists():
        raise BagError(f'bag {path} not found')
    if path.is_file():
        if path.suffix not in STORAGE_SUFFIXES:
            raise BagError(f'{path} is not a rosbag2 (a folder, or a .mcap or .db3 file)')
        return path
    if (path / 'metadata.yaml').is_file():
        return path
    return _only_storage_file(path, 'no metadata.yaml')


def _only_storage_file(folder: Path, why: str) -> Path:
    files = sorted(f for f in folder.iterdir() if f.suffix in STORAGE_SUFFIXES)
    if len(files) != 1:
        raise BagError(
            f'{folder} is not a rosbag2: {why} and '
            + ('no .mcap or .db3 file' if not files else f'{len(files)} storage files')
        )
    return files[0]


def open_source(path: str | Path) -> Source:
    """The storage behind `path` (see resolve()), its metadata's message counts, and what is
    wrong with it before any message is read."""
    resolved = resolve(path)
    if resolved.is_file():
        source = Source(resolved, [resolved])
    else:
        try:
            files, counts = _metadata(resolved)
            source = Source(resolved, files, counts)
        except (OSError, KeyError, TypeError, ValueError, AttributeError) as exc:
            try:
                only = _only_storage_file(resolved, 'its metadata.yaml is unreadable')
            except BagError as error:
                raise BagError(f'cannot open bag {resolved}: {error}') from None
            source = Source(only, [only], notes=[f'metadata.yaml unreadable ({_short(exc)})'])
    if source.storage == 'sqlite3':
        source.notes += [p for f in source.files if (p := _integrity(*_identity(f)))]
    return source


def _identity(path: Path) -> tuple[Path, int, int]:
    """(path, size, mtime): the key under which a file's checks are remembered."""
    stat = path.stat()
    return path.resolve(), stat.st_size, stat.st_mtime_ns


def _metadata(folder: Path) -> tuple[list[Path], dict[str, int]]:
    import yaml

    try:
        meta = yaml.safe_load((folder / 'metadata.yaml').read_text())
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None
    info = meta['rosbag2_bagfile_information']
    files = [folder / str(f) for f in info['relative_file_paths']]
    kinds = {f.suffix for f in files}
    if not files or not all(f.is_file() for f in files) or len(kinds) != 1:
        raise ValueError(f'storage files {[f.name for f in files]} are not all there')
    if not kinds <= set(STORAGE_SUFFIXES):
        raise ValueError(f'storage {kinds.pop()!r} is neither mcap nor sqlite3')
    counts = {
        str(t['topic_metadata']['name']): int(t['message_count'])
        for t in info.get('topics_with_message_count') or []
    }
    return files, counts


@functools.lru_cache(maxsize=32)
def _integrity(path: Path, size: int, mtime_ns: int) -> str:
    """PRAGMA integrity_check of a .db3 file ('' when SQLite finds its structure intact); the
    check reads the whole file, so it runs once per file as it is (size, mtime), not once per
    read of the bag (inspect, the player, ground truth, scoring each open it)."""
    import sqlite3

    try:
        with sqlite3.connect(f'file:{path}?mode=ro', uri=True) as db:
            rows = [r[0] for r in db.execute('PRAGMA integrity_check').fetchall()]
    except sqlite3.DatabaseError as exc:
        raise BagError(f'cannot open bag {path} (corrupt or not a rosbag2?): {exc}') from exc
    return (
        ''
        if rows == ['ok']
        else f'{path.name} fails SQLite integrity_check ({"; ".join(rows[:3])})'
    )


def _row_counts(files: list[Path]) -> dict[str, int]:
    """Messages per topic as the .db3 files hold them ({} where they cannot be counted)."""
    counts: dict[str, int] = {}
    for path in files:
        for name, n in _file_row_counts(*_identity(path)):
            counts[name] = counts.get(name, 0) + n
    return counts


@functools.lru_cache(maxsize=32)
def _file_row_counts(path: Path, size: int, mtime_ns: int) -> tuple[tuple[str, int], ...]:
    """(topic, messages) of one .db3 file, counted once per file as it is (see _integrity)."""
    import sqlite3

    query = (
        'SELECT topics.name, count(*) FROM messages '
        'JOIN topics ON messages.topic_id = topics.id GROUP BY topics.name'
    )
    try:
        with sqlite3.connect(f'file:{path}?mode=ro', uri=True) as db:
            return tuple(db.execute(query).fetchall())
    except sqlite3.DatabaseError:
        return ()


def _short(exc: Any) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]
