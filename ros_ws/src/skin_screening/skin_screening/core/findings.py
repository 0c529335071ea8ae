"""The evidence of alert episodes, kept on disk within a hard size bound (ROS-free).

An episode starts when an alert is raised (SUSPICIOUS or REFER) and ends when it clears. Of its
frames the `frames_per_finding` with the highest probability are kept as JPEG (with the CAM
overlay when one was published) and a JSON of their numbers; episode.json summarises it.

    <session>/findings/<start stamp>-<level>/episode.json
                                             <stamp>.jpg, <stamp>.cam.jpg, <stamp>.json

One budget covers every file under `budget_root` (the output folder: every session's CSVs,
evidence and reports): counted once at start, then this store's own writes as they happen and
the session folder's other files (the recorder's CSVs, growing) re-read before each write.
Room is made BEFORE a file is written, or the write is refused and counted. What gives way, in
this order:
  1. evidence images of ended episodes (any session), lowest risk first (an episode's highest
     probability), then the oldest, an episode's least probable frame first;
  2. the per-frame JSON records of ended episodes, in the same order;
  3. images, then records, of the open episode, least probable first, never its most probable.
Never removed, and written even when no room can be made (records, like a CSV row): episode.json,
so every finding stays listed with what it lost. Only the records can carry the total over the
budget: when the CSVs alone exceed it, the recorder says so (WARN) and every evidence write is
refused (counted, WARN).
Each frame costs O(log episodes) work and O(1) files, however full the budget.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .sessions import disk_bytes

LEVELS = {1: 'suspicious', 2: 'refer'}
# room kept for the summaries rewritten with each change (episode.json: a few hundred bytes,
# briefly twice while replaced)
SUMMARY_SLACK = 1024
IMAGES, RECORDS = ('.cam.jpg', '.jpg'), ('.json',)


@dataclass(eq=False)  # identity: kept in sets and heaps
class Episode:
    folder: Path
    start_ns: int
    level: str
    text: str = ''
    end_ns: int | None = None
    max_probability: float = 0.0
    frames_seen: int = 0
    dropped: int = 0
    kept: dict[int, float] = field(default_factory=dict)  # stamp -> probability of kept frames

    def summary(self) -> dict:
        data = asdict(self)
        data['folder'] = self.folder.name
        data['kept'] = {str(k): v for k, v in sorted(self.kept.items())}
        return data


class FindingsStore:
    def __init__(
        self,
        root: Path,
        max_bytes: int,
        frames_per_finding: int = 3,
        budget_root: Path | None = None,
        watch: Path | None = None,
    ):
        """Evidence in `root`; `max_bytes` bounds everything under `budget_root` (default:
        root); the files directly in `watch` (the session folder) are re-read before writes."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.budget_root = Path(budget_root or root)
        self.watch = Path(watch) if watch else None
        self.max_bytes = int(max_bytes)
        self.k = int(frames_per_finding)
        self.open: Episode | None = None
        self.refused = self.refused_bytes = 0
        self._queue: list = []  # (stage, risk, start, probability, seq, episode, stamp)
        self._seq = itertools.count()
        self._growth = 0
        self.bytes = disk_bytes(self.budget_root.rglob('*'))
        self._watched = self._watched_sizes()
        self._watched_at_tick = sum(self._watched.values())
        folders = {self.root, *self.budget_root.glob('*/findings'), self.budget_root / 'findings'}
        summaries = [p for f in folders for p in f.glob('*/episode.json')]
        self.closed = [self._load(p) for p in sorted(summaries, key=lambda p: p.parent.name)]
        for episode in self.closed:
            self._enqueue(episode)

    @staticmethod
    def _load(path: Path) -> Episode:
        """An episode of an earlier session (its images are dropped first when over the bound)."""
        data = json.loads(path.read_text())
        kept = {int(k): float(v) for k, v in data.get('kept', {}).items()}
        fields = {
            k: data[k]
            for k in ('start_ns', 'level', 'text', 'max_probability', 'frames_seen', 'dropped')
            if k in data
        }
        end = data.get('end_ns') or max(kept, default=data.get('start_ns', 0))
        return Episode(path.parent, **fields, end_ns=end, kept=kept)

    def start(self, stamp_ns: int, level: int, text: str) -> Episode:
        """Open an episode (or raise the open one's level: REFER outranks SUSPICIOUS)."""
        name = LEVELS.get(level, str(level))
        if self.open is not None:
            if level == 2:
                self.open.level = name
            self._write_summary(self.open)
            return self.open
        folder = self.root / f'{stamp_ns}-{name}'
        folder.mkdir(parents=True, exist_ok=True)
        self.open = Episode(folder, stamp_ns, name, text)
        self._write_summary(self.open)
        return self.open

    def end(self, stamp_ns: int) -> Episode | None:
        """Close the open episode at the clearing alert's stamp: frames after it that were
        offered before the clear was processed (topics are not ordered) are not its evidence."""
        episode, self.open = self.open, None
        if episode is not None:
            for late in [s for s in episode.kept if s > stamp_ns]:
                self._remove_frame(episode, late)
            episode.end_ns = stamp_ns
            self._write_summary(episode)
            self.closed.append(episode)
            self._enqueue(episode)
        return episode

    def offer(
        self,
        stamp_ns: int,
        probability: float,
        record: dict,
        jpeg: bytes | None,
        cam_jpeg: bytes | None = None,
    ) -> bool:
        """A frame of the open episode: kept if among its k most probable; returns kept."""
        episode = self.open
        if episode is None or stamp_ns in episode.kept:
            return False
        episode.frames_seen += 1
        episode.max_probability = max(episode.max_probability, probability)
        if len(episode.kept) >= self.k:
            weakest = min(episode.kept, key=episode.kept.get)
            if episode.kept[weakest] >= probability:
                self._write_summary(episode)
                return False
            self._remove_frame(episode, weakest)
        files = {
            f'{stamp_ns}.json': json.dumps(record).encode(),
            f'{stamp_ns}.jpg': jpeg,
            f'{stamp_ns}.cam.jpg': cam_jpeg,
        }
        files = {name: data for name, data in files.items() if data is not None}
        episode.kept[stamp_ns] = probability  # the most probable now: never evicted for itself
        if not self._room(sum(map(len, files.values())) + SUMMARY_SLACK):
            files = {name: data for name, data in files.items() if name.endswith('.json')}
        for name, data in files.items():
            self._write(episode.folder / name, data)
        self._write_summary(episode)
        return True

    def holding(self, stamp_ns: int) -> Episode | None:
        """The open or last ended episode that keeps this frame, if any."""
        for episode in [self.open, *self.closed[-1:]]:
            if episode is not None and stamp_ns in episode.kept:
                return episode
        return None

    def attach(self, stamp_ns: int, suffix: str, jpeg: bytes) -> bool:
        """The image ('.jpg') or CAM overlay ('.cam.jpg') of a kept frame that arrives after the
        frame's Diagnosis; the frame's record then says it has its image."""
        episode = self.holding(stamp_ns)
        if episode is None or not self._write(episode.folder / f'{stamp_ns}{suffix}', jpeg):
            return False
        record = episode.folder / f'{stamp_ns}.json'
        if suffix == '.jpg' and record.is_file():
            self._write(
                record, json.dumps(json.loads(record.read_text()) | {'has_frame': True}).encode()
            )
        return True

    def tick(self) -> bool:
        """Once a second (the node's timer): keep room for twice what the session folder's other
        files (the recorder's CSVs) grew by since the last tick, so that they never carry the
        total over the bound between two writes of this store. False: no room can be made."""
        self._refresh()
        watched = sum(self._watched.values())
        self._growth = max(watched - self._watched_at_tick, 0)
        self._watched_at_tick = watched
        return self._room(self._growth)

    def rescan(self) -> None:
        """Count the budget again from disk (after sessions were removed by retention)."""
        self.bytes = disk_bytes(self.budget_root.rglob('*'))
        self._watched = self._watched_sizes()
        self.closed = [e for e in self.closed if e.folder.is_dir()]

    # -- disk ---------------------------------------------------------------------------------
    def _watched_sizes(self) -> dict[Path, int]:
        if self.watch is None or not self.watch.is_dir():
            return {}
        return {p: p.stat().st_size for p in self.watch.iterdir() if p.is_file()}

    def _refresh(self) -> None:
        """Account the session folder's files that others write (the recorder's CSVs)."""
        now = self._watched_sizes()
        self.bytes += sum(now.values()) - sum(self._watched.get(p, 0) for p in now)
        self.bytes -= sum(size for p, size in self._watched.items() if p not in now)
        self._watched = now

    def _write(self, path: Path, data: bytes) -> bool:
        """Write after making room (the new file and its temporary copy), or refuse and count."""
        if not self._room(len(data)):
            self.refused += 1
            self.refused_bytes += len(data)
            return False
        self._put(path, data)
        return True

    def _put(self, path: Path, data: bytes) -> None:
        old = path.stat().st_size if path.exists() else 0
        tmp = path.with_suffix(path.suffix + '.tmp')
        tmp.write_bytes(data)
        os.replace(tmp, path)
        self.bytes += len(data) - old

    def _delete(self, path: Path) -> bool:
        if not path.exists():
            return False
        self.bytes -= path.stat().st_size
        path.unlink()
        return True

    def _write_summary(self, episode: Episode) -> None:
        """A finding's summary is a record, like a CSV row: room is made for it, and it is
        written even when none can be (only then can the records exceed the budget)."""
        data = self._summary(episode)
        self._room(len(data))
        self._put(episode.folder / 'episode.json', data)

    @staticmethod
    def _summary(episode: Episode) -> bytes:
        return json.dumps(episode.summary()).encode()

    def _remove_frame(self, episode: Episode, stamp_ns: int) -> None:
        for suffix in (*IMAGES, *RECORDS):
            self._delete(episode.folder / f'{stamp_ns}{suffix}')
        episode.kept.pop(stamp_ns, None)

    def _enqueue(self, episode: Episode) -> None:
        for stage in (0, 1):
            for stamp, p in episode.kept.items():
                risk = (episode.max_probability, episode.start_ns, p)
                heapq.heappush(self._queue, (stage, *risk, next(self._seq), episode, stamp))

    def _evict(self, episode: Episode, stamp: int, suffixes: tuple[str, ...]) -> bool:
        gone = [self._delete(episode.folder / f'{stamp}{s}') for s in suffixes]
        if suffixes is RECORDS and any(gone):
            episode.kept.pop(stamp, None)
        episode.dropped += sum(gone) if suffixes is IMAGES else 0
        return any(gone)

    def _room(self, incoming: int) -> bool:
        """Evict (see the module's docstring) until `incoming` more bytes fit under the bound.
        Evicting keeps SUMMARY_SLACK free besides, for the summaries it then rewrites, and the
        CSVs' growth of a second."""
        self._refresh()
        need = incoming + SUMMARY_SLACK + self._growth
        changed = set()
        while self.bytes + need > self.max_bytes and self._queue:
            stage, *_, episode, stamp = heapq.heappop(self._queue)
            if self._evict(episode, stamp, IMAGES if stage == 0 else RECORDS):
                changed.add(episode)
        episode = self.open
        if self.bytes + need > self.max_bytes and episode is not None:
            best = max(episode.kept, key=episode.kept.get, default=None)
            weakest_first = sorted((s for s in episode.kept if s != best), key=episode.kept.get)
            for suffixes in (IMAGES, RECORDS):
                for stamp in weakest_first:
                    if self.bytes + need <= self.max_bytes:
                        break
                    if self._evict(episode, stamp, suffixes):
                        changed.add(episode)
        for episode in changed:  # one at a time, within the slack kept free
            if self.bytes + SUMMARY_SLACK <= self.max_bytes:
                self._put(episode.folder / 'episode.json', self._summary(episode))
        return self.bytes + incoming <= self.max_bytes
