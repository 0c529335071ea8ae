"""Evaluation bags (rosbag2, mcap or sqlite3) written and read with `rosbags` (no rosbag2 here).

Layout of a bag the project writes:
  /image_raw      sensor_msgs/msg/Image (rgb8)    one per labelled frame
  /image_raw/compressed  sensor_msgs/msg/CompressedImage (optional, JPEG)
  /ground_truth   skin_screening_msgs/msg/GroundTruth, header identical to its frame's
Frames are stamped `start + i / rate_hz`; the bag's receive times equal the stamps. Any rosbag2
with an Image or CompressedImage topic plays (e.g. one from `ros2 bag record` on a device); only
scoring needs /ground_truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bag_storage import GROUND_TRUTH, BagError, Source, open_source, resolve, typestore
from .frames import message_to_rgb, rgb_to_fields, rgb_to_jpeg, stamp_to_ns

__all__ = ['GROUND_TRUTH', 'BagError', 'resolve', 'typestore']  # with the names defined below

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
STORAGES = ('mcap', 'sqlite3')


@dataclass(frozen=True)
class LabelledFrame:
    rgb: np.ndarray
    y: int
    label: str
    image_id: str
    group_id: str


def write_bag(
    path: str | Path,
    frames: Iterable[LabelledFrame],
    rate_hz: float = 10.0,
    storage: str = 'mcap',
    compressed: bool = False,
    frame_id: str = 'wearable_camera',
    start_ns: int = 1_700_000_000_000_000_000,
    distro: str = 'kilted',
) -> int:
    """Write labelled frames as an evaluation bag whose metadata `distro`'s `ros2 bag play`
    reads (core/bag_distro.py); returns the number of frames."""
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

    from .bag_distro import rewrite_metadata, writer_version

    if storage not in STORAGES:
        raise BagError(f'storage must be one of {STORAGES}, not {storage!r}')
    try:
        version = writer_version(distro)
    except ValueError as exc:
        raise BagError(str(exc)) from None
    store = typestore()
    T = store.types
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    count = 0
    try:
        with Writer(Path(path), version=version, storage_plugin=plugin) as writer:
            image_conn = writer.add_connection('/image_raw', IMAGE, typestore=store)
            jpeg_conn = (
                writer.add_connection('/image_raw/compressed', COMPRESSED, typestore=store)
                if compressed
                else None
            )
            truth_conn = writer.add_connection('/ground_truth', GROUND_TRUTH, typestore=store)
            for i, frame in enumerate(frames):
                t = start_ns + round(i * 1e9 / rate_hz)
                header = T['std_msgs/msg/Header'](
                    stamp=T['builtin_interfaces/msg/Time'](sec=t // 10**9, nanosec=t % 10**9),
                    frame_id=frame_id,
                )
                fields = rgb_to_fields(frame.rgb)
                fields['data'] = np.frombuffer(fields['data'], np.uint8)
                image = T[IMAGE](header=header, **fields)
                writer.write(image_conn, t, store.serialize_cdr(image, IMAGE))
                if jpeg_conn is not None:
                    jpeg = T[COMPRESSED](
                        header=header,
                        format='jpeg',
                        data=np.frombuffer(rgb_to_jpeg(frame.rgb), np.uint8),
                    )
                    writer.write(jpeg_conn, t, store.serialize_cdr(jpeg, COMPRESSED))
                truth = T[GROUND_TRUTH](
                    header=header,
                    y=int(frame.y),
                    label=frame.label,
                    image_id=frame.image_id,
                    group_id=frame.group_id,
                )
                writer.write(truth_conn, t, store.serialize_cdr(truth, GROUND_TRUTH))
                count += 1
    except WriterError as exc:
        raise BagError(f'cannot write bag {path}: {exc}') from exc
    if storage == 'mcap':  # CRCs as `ros2 bag record` (libmcap) writes them: damage shows
        from .mcap_salvage import add_crcs

        for mcap in Path(path).glob('*.mcap'):
            add_crcs(mcap)
    rewrite_metadata(Path(path), distro)
    return count


@dataclass(frozen=True)
class BagFrame:
    topic: str
    msgtype: str
    log_time_ns: int
    stamp_ns: int
    raw: bytes  # CDR bytes, publishable as-is by rclpy


@dataclass(frozen=True)
class ImageTopic:
    name: str
    msgtype: str
    encoding: str  # Image.encoding or CompressedImage.format of its first message
    count: int  # messages that can be played (read intact and deserialized)

    def __str__(self) -> str:
        kind = self.msgtype.rsplit('/', 1)[-1]
        return f'{self.name} ({kind}, {self.encoding or "?"}, {self.count} messages)'


@dataclass(frozen=True)
class BagInfo:
    path: Path  # what the player opens (see resolve())
    topic: ImageTopic
    labelled: bool  # has skin_screening_msgs/GroundTruth
    damage: str = ''  # what is wrong with the file ('' when nothing is known to be)
    expected: int | None = None  # messages of the topic the metadata or summary claims, if known
    lost: tuple[str, ...] = ()  # the topic's frames known to be lost, by log time or position

    @property
    def compressed(self) -> bool:
        return self.topic.msgtype == COMPRESSED

    @property
    def damage_note(self) -> str:
        """'bag damaged (<why>): N of M frames readable[; lost: ...]' ('' for an intact bag)."""
        if not self.damage:
            return ''
        of = f' of {self.expected}' if self.expected is not None else ' (how many more: unknown)'
        lost = f'; lost: {_listing(self.lost)}' if self.lost else ''
        return f'bag damaged ({self.damage}): {self.topic.count}{of} frames readable{lost}'


def _listing(names: tuple[str, ...], shown: int = 6) -> str:
    more = f' and {len(names) - shown} more' if len(names) > shown else ''
    return ', '.join(names[:shown]) + more


def _encoding(msg: Any) -> str:
    """Image.encoding, or CompressedImage.format."""
    return getattr(msg, 'encoding', '') or msg.format


@dataclass
class _Scan:
    """Per image topic: the first message, the playable count, the frames lost and why."""

    first: Any = None
    count: int = 0
    lost: list[str] = field(default_factory=list)
    why: dict[str, int] = field(default_factory=dict)


def _frames(source: Source, topics: Callable[[str], bool], scans: dict[str, _Scan], kinds=None):
    """(RawMessage, stamp_ns, message) of the image topics `topics` selects that can be played:
    read intact, deserialized, and not a repeat of a stamp already played (a duplicated
    region of the file). What cannot be is recorded in `scans` as lost, with the reason.
    `kinds` (a set) collects the message types of every message read."""
    store, seen = typestore(), set()
    for m in source.messages(lambda t, kind: kinds is not None or topics(t)):
        if kinds is not None:
            kinds.add(m.msgtype)
        if m.msgtype not in (IMAGE, COMPRESSED) or not topics(m.topic):
            continue
        scan = scans.setdefault(m.topic, _Scan())
        try:
            msg = store.deserialize_cdr(m.raw, m.msgtype)
            stamp = stamp_to_ns(msg.header.stamp)
            why = 'repeat an earlier frame' if (m.topic, stamp) in seen else ''
        except Exception:  # noqa: BLE001 - any deserializer error: a damaged message
            msg, stamp, why = None, 0, 'do not deserialize'
        if why:
            scan.lost.append(f'log time {m.log_time_ns / 1e9:.3f} s ({why})')
            scan.why[why] = scan.why.get(why, 0) + 1
            continue
        seen.add((m.topic, stamp))
        scan.count += 1
        yield m, stamp, msg


def inspect_bag(path: str | Path, topic: str | None = None) -> BagInfo:
    """Check a bag BEFORE anything plays it: readable, the image topic (`topic`, or the only one;
    several are refused with the list), not empty; what is damaged, and which frames that
    loses. Reads every message once (that is what verifying it takes). BagError otherwise."""
    source = open_source(path)
    scans: dict[str, _Scan] = {}
    kinds: set[str] = set()
    for m, _, msg in _frames(source, lambda _: True, scans, kinds):
        if scans[m.topic].first is None:
            scans[m.topic].first = (m.msgtype, _encoding(msg))
    candidates = [ImageTopic(name, *s.first, s.count) for name, s in scans.items() if s.first]
    candidates += [  # declared, but not one message of them can be played
        ImageTopic(name, kind, '', 0)
        for name, kind in source.topics.items()
        if kind in (IMAGE, COMPRESSED) and not (name in scans and scans[name].first)
    ]
    if not any(c.count for c in candidates) and source.problems:
        raise BagError(
            f'cannot open bag {source.path}: its readable part holds no image '
            f'({"; ".join(source.problems)})'
        )
    chosen = _choose(source.path, candidates, topic)
    scan = scans[chosen.name]
    damage = '; '.join(source.problems + [f'{n} frames {w}' for w, n in scan.why.items()])
    lost = tuple(f'log time {t / 1e9:.3f} s' for t in source.lost.get(chosen.name, []))
    return BagInfo(
        source.path,
        chosen,
        GROUND_TRUTH in kinds,
        damage,
        source.counts.get(chosen.name),
        lost + tuple(scan.lost),
    )


def _choose(path: Path, candidates: list[ImageTopic], topic: str | None) -> ImageTopic:
    """The image topic to play: `topic`, or the only one; BagError naming the candidates."""
    chosen = [c for c in candidates if topic is None or c.name == topic]
    listing = '; '.join(map(str, candidates)) or 'none'
    if not chosen:
        what = f'no image topic {topic}' if topic else 'no sensor_msgs/Image or CompressedImage'
        raise BagError(f'bag {path} has {what} (image topics: {listing})')
    if len(chosen) > 1:
        raise BagError(
            f'bag {path} has {len(chosen)} image topics, choose one with --topic: {listing}'
        )
    if chosen[0].count == 0:
        raise BagError(f'image topic {chosen[0].name} of bag {path} is empty')
    return chosen[0]


def read_frames(path: str | Path, topic: str | None = None) -> Iterator[BagFrame]:
    """Frames of the bag's image topic (`topic`, or the one inspect_bag() chooses) in file
    order; of a damaged bag, the ones that can be played (inspect_bag() says how many)."""
    return frames_of(inspect_bag(path, topic))


def frames_of(info: BagInfo) -> Iterator[BagFrame]:
    """read_frames() for a bag inspect_bag() has already checked: the same frames it counted."""
    source = open_source(info.path)
    for m, stamp, _ in _frames(source, lambda t: t == info.topic.name, {}):
        yield BagFrame(m.topic, m.msgtype, m.log_time_ns, stamp, m.raw)


def decoded_frames(
    info: BagInfo, keep: Callable[[int], bool] = lambda stamp_ns: True, skipped: list | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """(stamp_ns, RGB) of the frames frames_of(info) plays whose stamp `keep` accepts, decoded
    as the node decodes them; a frame the node would reject is left out (and its stamp appended
    to `skipped`, where given)."""
    from .preprocess import FrameError

    store = typestore()
    for frame in frames_of(info):
        if not keep(frame.stamp_ns):
            continue
        try:
            rgb = message_to_rgb(store.deserialize_cdr(frame.raw, frame.msgtype))
        except FrameError:
            if skipped is not None:
                skipped.append(frame.stamp_ns)
            continue
        yield frame.stamp_ns, rgb


def ground_truth(path: str | Path, problems: list[str] | None = None) -> dict[int, dict]:
    """stamp_ns -> {y, label, image_id, group_id} from the bag's /ground_truth topic. Messages
    that do not deserialize are left out and counted in `problems` (what a damaged file lost
    is inspect_bag()'s to say)."""
    store, truth, broken = typestore(), {}, 0
    for m in open_source(path).messages(lambda _, kind: kind == GROUND_TRUTH):
        try:
            msg = store.deserialize_cdr(m.raw, m.msgtype)
            stamp = stamp_to_ns(msg.header.stamp)
        except Exception:  # noqa: BLE001 - any deserializer error: a damaged message
            broken += 1
            continue
        truth[stamp] = {
            'y': int(msg.y),
            'label': msg.label,
            'image_id': msg.image_id,
            'group_id': msg.group_id,
        }
    if broken and problems is not None:
        problems.append(f'{broken} ground-truth messages do not deserialize (not scored)')
    if not truth:
        raise BagError(f'bag {path} has no readable {GROUND_TRUTH} messages: it cannot be scored')
    return truth


def labels_from_csv(
    path: str | Path, bag: str | Path, topic: str | None = None
) -> dict[int, dict]:
    """Ground truth for a bag without it: a CSV with a `y` column (1 = skin cancer, 0 = other)
    keyed by `index` (0-based position of the frame in the image topic) or `stamp_ns` (the
    frame's header stamp); optional `label` and `image_id`. Same shape as ground_truth()."""
    import csv

    try:
        rows = list(csv.DictReader(Path(path).open()))
    except OSError as exc:
        raise BagError(f'cannot read labels {path}: {exc}') from exc
    key = next((k for k in ('stamp_ns', 'index') if rows and k in rows[0]), None)
    if key is None or 'y' not in rows[0]:
        raise BagError(f'labels {path} need a y column and an index or stamp_ns column')
    stamps = [f.stamp_ns for f in read_frames(bag, topic)]
    truth = {}
    for line, row in enumerate(rows, start=2):
        try:
            stamp = int(row['stamp_ns']) if key == 'stamp_ns' else stamps[int(row['index'])]
            y = int(row['y'])
        except (ValueError, IndexError) as exc:
            raise BagError(f'labels {path}, line {line}: {exc}') from None
        if y not in (0, 1) or stamp not in stamps:
            raise BagError(
                f'labels {path}, line {line}: y must be 0/1 and name a frame of the bag'
            )
        name = row.get('image_id') or str(stamp)
        truth[stamp] = {'y': y, 'label': row.get('label', ''), 'image_id': name, 'group_id': ''}
    return truth
