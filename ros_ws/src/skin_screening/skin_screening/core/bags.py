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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .frames import rgb_to_fields, rgb_to_jpeg, stamp_to_ns

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
GROUND_TRUTH = 'skin_screening_msgs/msg/GroundTruth'
STORAGES = ('mcap', 'sqlite3')


class BagError(RuntimeError):
    """A bag that cannot be read or written (missing, corrupt, truncated, no image topic)."""


def msg_dir() -> Path:
    from ..bootstrap import msg_source_dir

    return msg_source_dir() / 'msg'


def typestore() -> Any:
    """ROS 2 Humble types (wire-compatible with Jazzy/Kilted for these) + GroundTruth."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    text = (msg_dir() / 'GroundTruth.msg').read_text()
    store.register(get_types_from_msg(text, GROUND_TRUTH))
    return store


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
    rewrite_metadata(Path(path), distro)
    return count


STORAGE_SUFFIXES = ('.mcap', '.db3')


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
    files = sorted(f for f in path.iterdir() if f.suffix in STORAGE_SUFFIXES)
    if len(files) != 1:
        raise BagError(
            f'{path} is not a rosbag2: no metadata.yaml and '
            + ('no .mcap or .db3 file' if not files else f'{len(files)} storage files')
        )
    return files[0]


def _open(path: Path):
    from rosbags.highlevel import AnyReader

    reader = AnyReader([resolve(path)], default_typestore=typestore())
    try:
        reader.open()
    except Exception as exc:  # rosbags raises several error types (AnyReaderError, ...)
        raise BagError(f'cannot open bag {path} (corrupt or not a rosbag2?): {exc}') from exc
    return reader


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
    count: int

    def __str__(self) -> str:
        kind = self.msgtype.rsplit('/', 1)[-1]
        return f'{self.name} ({kind}, {self.encoding or "?"}, {self.count} messages)'


@dataclass(frozen=True)
class BagInfo:
    path: Path  # what the player opens (see resolve())
    topic: ImageTopic
    labelled: bool  # has skin_screening_msgs/GroundTruth
    damage: str = ''  # a damaged MCAP: why reading stops early (topic.count = frames readable)
    expected: int | None = None  # frames of the topic before the damage (metadata.yaml), if known

    @property
    def compressed(self) -> bool:
        return self.topic.msgtype == COMPRESSED

    @property
    def damage_note(self) -> str:
        """'bag damaged (<why>): N of M frames readable' ('' for an intact bag)."""
        if not self.damage:
            return ''
        of = f' of {self.expected}' if self.expected is not None else ' (how many more: unknown)'
        return f'bag damaged ({self.damage}): {self.topic.count}{of} frames readable'


def _encoding(msg: Any) -> str:
    """Image.encoding, or CompressedImage.format."""
    return getattr(msg, 'encoding', '') or msg.format


def _damaged_mcap(resolved: Path) -> tuple[Path, dict[str, int]] | None:
    """(the .mcap file, {topic: message count from metadata.yaml}) when `resolved` is an MCAP
    bag, for the salvage of a file rosbags cannot open."""
    import yaml

    if resolved.is_file():
        return (resolved, {}) if resolved.suffix == '.mcap' else None
    try:
        meta = yaml.safe_load((resolved / 'metadata.yaml').read_text())
        info = meta['rosbag2_bagfile_information']
        files = [resolved / f for f in info['relative_file_paths']]
        counts = {
            t['topic_metadata']['name']: int(t['message_count'])
            for t in info.get('topics_with_message_count', [])
        }
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None
    mcaps = [f for f in files if f.suffix == '.mcap' and f.is_file()]
    return (mcaps[0], counts) if len(files) == len(mcaps) == 1 else None


def _salvage_info(resolved: Path, topic: str | None, error: BagError) -> BagInfo:
    """inspect_bag() for an MCAP bag rosbags cannot open: what a forward scan reads."""
    from .mcap_salvage import Salvage

    found = _damaged_mcap(resolved)
    if found is None:
        raise error
    salvage = Salvage(found[0])
    firsts: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for m in salvage.messages():
        if m.msgtype in (IMAGE, COMPRESSED):
            firsts.setdefault(m.topic, m)
            counts[m.topic] = counts.get(m.topic, 0) + 1
    if salvage.damage.startswith('not an MCAP'):
        raise error
    if not firsts:
        raise BagError(f'{error}; its readable part holds no image ({salvage.damage})')
    store = typestore()
    candidates = [
        ImageTopic(
            name, m.msgtype, _encoding(store.deserialize_cdr(m.data, m.msgtype)), counts[name]
        )
        for name, m in firsts.items()
    ]
    chosen = _choose(resolved, candidates, topic)
    labelled = GROUND_TRUTH in salvage.schemas.values()
    damage = salvage.damage or 'no summary'
    return BagInfo(resolved, chosen, labelled, damage, found[1].get(chosen.name))


def inspect_bag(path: str | Path, topic: str | None = None) -> BagInfo:
    """Check a bag BEFORE anything plays it: readable, the image topic (`topic`, or the only one;
    several are refused with the list), not empty. BagError with the reason otherwise."""
    resolved = resolve(path)
    try:
        reader = _open(resolved)
    except BagError as exc:
        return _salvage_info(resolved, topic, exc)
    try:
        candidates = []
        for conn in (c for c in reader.connections if c.msgtype in (IMAGE, COMPRESSED)):
            first = next(reader.messages(connections=[conn]), None)
            encoding = _encoding(reader.deserialize(first[2], conn.msgtype)) if first else ''
            candidates.append(ImageTopic(conn.topic, conn.msgtype, encoding, int(conn.msgcount)))
        labelled = any(c.msgtype == GROUND_TRUTH for c in reader.connections)
    except Exception as exc:
        raise BagError(f'bag {path} cannot be read: {exc}') from exc
    finally:
        reader.close()
    return BagInfo(resolved, _choose(path, candidates, topic), labelled)


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


def _raw_messages(path: Path, keep: Callable[[str, str], bool]) -> Iterator[tuple]:
    """(topic, msgtype, log time ns, CDR bytes) of the topics `keep(topic, msgtype)` selects, in
    time order; for an MCAP file rosbags cannot open (truncated, no summary), its readable part.
    BagError if an intact-looking bag turns out cut short."""
    resolved = resolve(path)
    try:
        reader = _open(resolved)
    except BagError:
        from .mcap_salvage import Salvage

        found = _damaged_mcap(resolved)
        if found is None:
            raise
        for m in Salvage(found[0]).messages():
            if keep(m.topic, m.msgtype):
                yield m.topic, m.msgtype, m.log_time_ns, m.data
        return
    try:
        conns = [c for c in reader.connections if keep(c.topic, c.msgtype)]
        n = 0
        try:
            for conn, t, raw in reader.messages(connections=conns):
                yield conn.topic, conn.msgtype, t, bytes(raw)
                n += 1
        except Exception as exc:
            raise BagError(
                f'bag {path} is truncated or corrupt after {n} messages: {exc}'
            ) from exc
    finally:
        reader.close()


def read_frames(path: str | Path, topic: str | None = None) -> Iterator[BagFrame]:
    """Frames of the bag's image topic (`topic`, or the one inspect_bag() chooses) in time
    order; of a damaged MCAP, the readable ones (inspect_bag() says how many)."""
    return frames_of(inspect_bag(path, topic))


def frames_of(info: BagInfo) -> Iterator[BagFrame]:
    """read_frames() for a bag inspect_bag() has already checked."""
    store = typestore()
    for name, msgtype, t, raw in _raw_messages(info.path, lambda n, _: n == info.topic.name):
        stamp = stamp_to_ns(store.deserialize_cdr(raw, msgtype).header.stamp)
        yield BagFrame(name, msgtype, t, stamp, raw)


def ground_truth(path: str | Path) -> dict[int, dict]:
    """stamp_ns -> {y, label, image_id, group_id} from the bag's /ground_truth topic."""
    store, truth = typestore(), {}
    for _, msgtype, _, raw in _raw_messages(Path(path), lambda _, t: t == GROUND_TRUTH):
        m = store.deserialize_cdr(raw, msgtype)
        truth[stamp_to_ns(m.header.stamp)] = {
            'y': int(m.y),
            'label': m.label,
            'image_id': m.image_id,
            'group_id': m.group_id,
        }
    if not truth:
        raise BagError(f'bag {path} has no {GROUND_TRUTH} messages: it cannot be scored')
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
