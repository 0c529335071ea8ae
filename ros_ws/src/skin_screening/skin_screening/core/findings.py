"""The evidence of alert episodes, kept on disk within a size bound (ROS-free).

An episode starts when an alert is raised (SUSPICIOUS or REFER) and ends when it clears. Of its
frames the `frames_per_finding` with the highest probability are kept as JPEG (with the CAM
overlay when one was published) and a JSON of their numbers; episode.json summarises it.

    findings/<start stamp>-<level>/episode.json
                                   <stamp>.jpg, <stamp>.cam.jpg, <stamp>.json

The bound covers every file under the root, at every moment: room is made BEFORE a file is
written. Evidence images go first from the ended episode of lowest risk (its highest
probability), oldest first, lowest-probability frame first; the open episode's images go last.
episode.json files stay (a few hundred bytes each) and count what was dropped, so a report still
lists every finding.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

LEVELS = {1: 'suspicious', 2: 'refer'}
# room kept for the summaries rewritten with each change (episode.json: a few hundred bytes,
# briefly twice while replaced)
SUMMARY_SLACK = 1024


@dataclass
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
    def __init__(self, root: Path, max_bytes: int, frames_per_finding: int = 3):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self.k = int(frames_per_finding)
        self.open: Episode | None = None
        self.closed = [self._load(p) for p in sorted(self.root.glob('*/episode.json'))]
        self.bytes = sum(p.stat().st_size for p in self.root.rglob('*') if p.is_file())

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
        self._bound(incoming=SUMMARY_SLACK)
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
        episode.kept[stamp_ns] = probability
        files = {
            f'{stamp_ns}.json': json.dumps(record).encode(),
            f'{stamp_ns}.jpg': jpeg,
            f'{stamp_ns}.cam.jpg': cam_jpeg,
        }
        files = {name: data for name, data in files.items() if data is not None}
        self._bound(incoming=sum(map(len, files.values())) + SUMMARY_SLACK)  # room first
        if self.bytes + sum(map(len, files.values())) + SUMMARY_SLACK > self.max_bytes:
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
        if episode is None:
            return False
        self._bound(incoming=len(jpeg) + SUMMARY_SLACK)
        self._write(episode.folder / f'{stamp_ns}{suffix}', jpeg)
        record = episode.folder / f'{stamp_ns}.json'
        if suffix == '.jpg' and record.is_file():
            self._write(
                record, json.dumps(json.loads(record.read_text()) | {'has_frame': True}).encode()
            )
        return True

    # -- disk ---------------------------------------------------------------------------------
    def _write(self, path: Path, data: bytes) -> Path:
        old = path.stat().st_size if path.exists() else 0
        tmp = path.with_suffix(path.suffix + '.tmp')
        tmp.write_bytes(data)
        os.replace(tmp, path)
        self.bytes += len(data) - old
        return path

    def _delete(self, path: Path) -> None:
        if path.exists():
            self.bytes -= path.stat().st_size
            path.unlink()

    def _write_summary(self, episode: Episode) -> None:
        self._write(episode.folder / 'episode.json', json.dumps(episode.summary()).encode())

    def _remove_frame(self, episode: Episode, stamp_ns: int) -> None:
        for suffix in ('.jpg', '.cam.jpg', '.json'):
            self._delete(episode.folder / f'{stamp_ns}{suffix}')
        episode.kept.pop(stamp_ns, None)

    def _bound(self, incoming: int) -> None:
        """Drop evidence images until `incoming` more bytes fit under the bound (see the
        module's docstring): files are made room for BEFORE they are written."""
        if self.bytes + incoming <= self.max_bytes:
            return
        ended = sorted(self.closed, key=lambda e: (e.max_probability, e.start_ns))
        order = ended + ([self.open] if self.open is not None else [])
        for episode in order:
            for stamp in sorted(episode.kept, key=episode.kept.get):
                images = [episode.folder / f'{stamp}{s}' for s in ('.cam.jpg', '.jpg')]
                for image in images:
                    if image.exists():
                        self._delete(image)
                        episode.dropped += 1
                        if self.bytes + incoming <= self.max_bytes:
                            self._write_summary(episode)
                            return
            self._write_summary(episode)
