"""run.py on bags a device records (written here with rosbags itself from real images, not with
the project's writer): encodings, compressed frames, topic choice, no labels, metadata versions,
damaged files. Every kind ends in one clear line and an exit code."""

import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import yaml
from skin_screening.core.bags import COMPRESSED, IMAGE, typestore

from tests.conftest import REPO

START_NS = 1_700_000_000_000_000_000


def _header(T, i):
    t = START_NS + i * 100_000_000
    stamp = T['builtin_interfaces/msg/Time'](sec=t // 10**9, nanosec=t % 10**9)
    return t, T['std_msgs/msg/Header'](stamp=stamp, frame_id='camera')


def image(rgb, encoding):
    """sensor_msgs/Image fields of `rgb` in `encoding` (rgb8, bgr8, mono8, 16UC1)."""
    pixels = {
        'rgb8': rgb,
        'bgr8': rgb[:, :, ::-1],
        'mono8': cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
        '16UC1': cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 200,
    }[encoding]
    pixels = np.ascontiguousarray(pixels)
    h, w = pixels.shape[:2]
    return IMAGE, {
        'height': h,
        'width': w,
        'encoding': encoding,
        'is_bigendian': 0,
        'step': pixels.strides[0],
        'data': pixels.view(np.uint8).ravel(),
    }


def compressed(rgb, fmt):
    ok, buf = cv2.imencode(f'.{fmt}', rgb[:, :, ::-1])
    assert ok
    return COMPRESSED, {'format': fmt, 'data': buf.ravel()}


def write(path, topics: dict, storage='mcap', version=9, zstd=False):
    """A rosbag2 with `topics`: name -> list of (msgtype, fields), 10 Hz; `zstd`: compressed
    storage (zstd chunks in an mcap, as `ros2 bag record --compression-mode` can make)."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

    store = typestore()
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    writer = Writer(path, version=version, storage_plugin=plugin)
    if zstd:
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        for name, messages in topics.items():
            msgtype = messages[0][0] if messages else IMAGE
            conn = writer.add_connection(name, msgtype, typestore=store)
            for i, (kind, fields) in enumerate(messages):
                t, header = _header(store.types, i)
                msg = store.types[kind](header=header, **fields)
                writer.write(conn, t, store.serialize_cdr(msg, kind))
    return path


def as_humble(path):
    """Rewrite metadata.yaml the way Humble's rosbag2 (version 5) writes it: QoS profiles as a
    YAML string, no custom_data / ros_distro / type_description_hash."""
    meta_path = path / 'metadata.yaml'
    meta = yaml.safe_load(meta_path.read_text())
    info = meta['rosbag2_bagfile_information']
    info['version'] = 5
    for key in ('custom_data', 'ros_distro'):
        info.pop(key, None)
    for topic in info['topics_with_message_count']:
        topic['topic_metadata'].pop('type_description_hash', None)
        topic['topic_metadata']['offered_qos_profiles'] = ''
    meta_path.write_text(yaml.safe_dump(meta))
    return path


def run_py(bag, tmp_path, ros_env, *args):
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(REPO / 'run.py'), '--bag', str(bag), '--precisions', 'fp32']
        + ['--out', str(tmp_path / 'out'), *args],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result, time.monotonic() - start


@pytest.fixture(scope='module')
def rgbs(sample_frames):
    return sample_frames[0][:6]


def test_not_a_bag_is_one_line_within_two_seconds(tmp_path, ros_env):
    (tmp_path / 'notes.txt').write_text('not a bag')
    result, seconds = run_py(tmp_path, tmp_path, ros_env)
    assert result.returncode == 2 and seconds < 2.0, (seconds, result.stderr)
    assert result.stderr.strip() == (
        f'error: {tmp_path} is not a rosbag2: no metadata.yaml and no .mcap or .db3 file'
    )


@pytest.mark.ros
@pytest.mark.parametrize(
    ('kind', 'storage', 'version'),
    [
        ('rgb8', 'mcap', 9),  # Kilted's metadata version
        ('bgr8', 'sqlite3', 8),  # Jazzy's
        ('jpeg', 'mcap', 9),
        ('png', 'sqlite3', 9),
        ('rgb8', 'mcap', 5),  # Humble's, rewritten by the test
    ],
)
def test_device_bags_replay_without_labels(rgbs, tmp_path, ros_env, kind, storage, version):
    frames = [compressed(f, kind) if kind in ('jpeg', 'png') else image(f, kind) for f in rgbs]
    bag = write(tmp_path / 'bag', {'/camera/image': frames}, storage, 9 if version == 9 else 8)
    if version == 5:
        as_humble(bag)
    result, _ = run_py(bag, tmp_path, ros_env)
    assert result.returncode == 0, result.stderr[-2000:]
    row = result.stdout.split('energy\n', 1)[1].splitlines()[0].split()
    assert row[:4] == ['fp32', '6', '6', '0']  # frames, answered, lost
    assert 'no ground truth in the bag: diagnoses are in' in result.stdout
    # every node of the replay listened before the first frame (compressed frames too: the
    # findings node keeps their evidence; before, the player waited 120 s for it, then played)
    (log,) = (tmp_path / 'out').glob('*-main/fp32/logs/bag_player.log')
    assert 'not fully connected' not in log.read_text()


@pytest.mark.ros
def test_two_image_topics_need_a_choice(rgbs, tmp_path, ros_env):
    """A RealSense-like recording: depth (16UC1) first, colour second."""
    bag = write(
        tmp_path / 'bag',
        {
            '/camera/depth': [image(f, '16UC1') for f in rgbs],
            '/camera/color': [image(f, 'rgb8') for f in rgbs],
        },
    )
    refused, seconds = run_py(bag, tmp_path, ros_env)
    assert refused.returncode == 2 and seconds < 2.0
    assert 'has 2 image topics, choose one with --topic' in refused.stderr
    assert '/camera/depth (Image, 16UC1, 6 messages)' in refused.stderr
    chosen, _ = run_py(bag, tmp_path, ros_env, '--topic', '/camera/color')
    assert chosen.returncode == 0, chosen.stderr[-2000:]


@pytest.mark.ros
def test_frames_the_node_cannot_read_fail_the_run_with_the_reason(rgbs, tmp_path, ros_env):
    bag = write(tmp_path / 'bag', {'/camera/image': [image(f, 'mono8') for f in rgbs]})
    result, _ = run_py(bag, tmp_path, ros_env)
    assert result.returncode == 3
    assert '6 unanswered: 6 rejected by the node' in result.stderr


def truncate(bag, fraction: float):
    storage = next(bag.glob('*.mcap'))
    storage.write_bytes(storage.read_bytes()[: int(storage.stat().st_size * fraction)])
    return bag


@pytest.mark.ros
def test_a_truncated_bag_replays_what_is_readable_and_says_what_was_lost(rgbs, tmp_path, ros_env):
    """An mcap cut at 55 % (power lost while recording): rosbags refuses it (no summary); the
    complete chunks before the cut are replayed and the rest is reported, exit code 3."""
    from skin_screening.core.bags import inspect_bag, read_frames

    # 640x480 frames as a device camera sends them: rosbags closes a chunk past 1 MiB, so the
    # file holds 3 chunks of 2 frames
    frames = [image(cv2.resize(f, (640, 480)), 'rgb8') for f in rgbs]
    bag = write(tmp_path / 'bag', {'/camera/image': frames})
    intact = [f.raw for f in read_frames(bag)]
    truncate(bag, 0.55)
    info = inspect_bag(bag)
    assert info.expected == 6 and 0 < info.topic.count < 6
    assert 'cut short' in info.damage, info.damage
    salvaged = [f.raw for f in read_frames(bag)]
    assert salvaged == intact[: info.topic.count]  # byte for byte, in order
    result, _ = run_py(bag, tmp_path, ros_env)
    assert result.returncode == 3, result.stderr[-2000:]
    n = info.topic.count
    assert 'warning: bag damaged (record at byte' in result.stderr
    assert f'fp32: 6 frames in the bag, {n} published, {n} answered, {n} recorded' in result.stderr
    assert f'{6 - n} never published (bag damaged' in result.stderr
    assert f'{n} of 6 frames readable' in result.stderr


def test_the_readable_part_of_a_cut_compressed_mcap_is_read_byte_for_byte(rgbs, tmp_path):
    from skin_screening.core.bags import inspect_bag, read_frames

    frames = [image(cv2.resize(f, (640, 480)), 'rgb8') for f in rgbs]
    bag = write(tmp_path / 'bag', {'/camera/image': frames}, zstd=True)
    assert next(bag.glob('*.mcap')).read_bytes().count(b'zstd') >= 2  # compressed chunks
    intact = [f.raw for f in read_frames(bag)]
    info = inspect_bag(truncate(bag, 0.7))
    assert 0 < info.topic.count < 6 and info.expected == 6
    assert [f.raw for f in read_frames(bag)] == intact[: info.topic.count]


def test_damaged_bags_are_refused_before_anything_starts(rgbs, tmp_path, ros_env):
    bag = write(tmp_path / 'bag', {'/camera/image': [image(f, 'rgb8') for f in rgbs]})
    truncated, seconds = run_py(truncate(bag, 0.1), tmp_path, ros_env)
    assert truncated.returncode == 2 and seconds < 2.0
    assert (
        'cannot open bag' in truncated.stderr
        and 'readable part holds no image' in truncated.stderr
    )
    empty = write(tmp_path / 'empty', {'/camera/image': []})
    result, _ = run_py(empty, tmp_path, ros_env)
    assert result.returncode == 2 and 'is empty' in result.stderr


@pytest.mark.ros
def test_a_bag_without_metadata_is_read_from_its_storage_file(rgbs, tmp_path, ros_env):
    bag = write(tmp_path / 'bag', {'/camera/image': [image(f, 'rgb8') for f in rgbs]}, 'sqlite3')
    (bag / 'metadata.yaml').unlink()
    result, _ = run_py(bag, tmp_path, ros_env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f'of {next(bag.glob("*.db3"))}' in result.stdout


@pytest.mark.ros
def test_labels_from_a_csv_score_a_bag_without_ground_truth(
    rgbs, sample_frames, tmp_path, ros_env, ham_model
):
    """Labels by frame index and by header stamp give the same F1, and it is the F1 of the same
    engine run here on the same decoded JPEG frames; a bad CSV is one line, before any node."""
    import json

    from skin_screening.core.classifier import Classifier
    from skin_screening.core.metrics import binary_report

    frames = [compressed(f, 'jpeg') for f in rgbs]
    bag = write(tmp_path / 'bag', {'/camera/image/compressed': frames})
    y = [int(v) for v in sample_frames[1][:6]]
    assert 0 < sum(y) < 6  # both classes among the six
    by_index = tmp_path / 'by_index.csv'
    by_index.write_text('index,y\n' + ''.join(f'{i},{v}\n' for i, v in enumerate(y)))
    by_stamp = tmp_path / 'by_stamp.csv'
    by_stamp.write_text(
        'stamp_ns,y\n' + ''.join(f'{START_NS + i * 100_000_000},{v}\n' for i, v in enumerate(y))
    )
    f1 = []
    for labels in (by_index, by_stamp):
        result, _ = run_py(bag, tmp_path / labels.stem, ros_env, '--labels', str(labels))
        assert result.returncode == 0, result.stderr[-2000:]
        (run,) = (tmp_path / labels.stem / 'out').glob('*-main')
        f1.append(json.loads((run / 'results.json').read_text())['rows'][0]['f1'])
    decoded = [
        cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1] for _, f in frames for data in [f['data']]
    ]
    clf = Classifier(ham_model)
    direct = binary_report(np.array(y), clf.classify(decoded)[0].probability, clf.rule.threshold)
    assert f1[0] == f1[1] == pytest.approx(direct['f1'])
    (tmp_path / 'bad.csv').write_text('frame,label\n0,mel\n')
    bad, seconds = run_py(bag, tmp_path, ros_env, '--labels', str(tmp_path / 'bad.csv'))
    assert bad.returncode == 2 and seconds < 2.0
    assert 'need a y column and an index or stamp_ns column' in bad.stderr


def rosbag2_decodes(info: dict, reader: str) -> None:
    """What rosbag2_storage/yaml.hpp of `reader` (humble: 0.15, jazzy: 0.26) asks of each field
    when it decodes metadata.yaml; AssertionError where yaml-cpp would throw bad conversion."""
    v = info['version']
    assert isinstance(v, int) and isinstance(info['storage_identifier'], str)
    assert isinstance(info['duration']['nanoseconds'], int)
    assert isinstance(info['starting_time']['nanoseconds_since_epoch'], int)
    assert isinstance(info['message_count'], int)
    for topic in info['topics_with_message_count']:
        meta = topic['topic_metadata']
        assert all(isinstance(meta[k], str) for k in ('name', 'type', 'serialization_format'))
        qos = meta['offered_qos_profiles']
        if reader == 'humble' or v < 9:  # as<std::string>() from version 4 on
            assert isinstance(qos, str), f'{reader} reads offered_qos_profiles as a string'
        else:
            assert isinstance(qos, list)
        if reader != 'humble' and v >= 7:
            assert isinstance(meta['type_description_hash'], str)
        assert isinstance(topic['message_count'], int)
    assert all(isinstance(p, str) for p in info['relative_file_paths'])
    assert isinstance(info['compression_format'], str) and isinstance(
        info['compression_mode'], str
    )
    if v >= 5:
        for f in info['files']:
            assert isinstance(f['path'], str) and isinstance(f['message_count'], int)
            assert isinstance(f['starting_time']['nanoseconds_since_epoch'], int)
            assert isinstance(f['duration']['nanoseconds'], int)
    if reader != 'humble' and v >= 6:
        assert isinstance(info['custom_data'], (dict, type(None)))
    if reader != 'humble' and v >= 8:
        assert isinstance(info['ros_distro'], str)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
@pytest.mark.parametrize(('distro', 'version'), [('humble', 5), ('jazzy', 9), ('kilted', 9)])
def test_evaluation_bags_carry_the_metadata_each_distro_reads(
    rgbs, tmp_path, storage, distro, version
):
    import sqlite3

    from skin_screening.core.bags import LabelledFrame, ground_truth, read_frames, write_bag

    frames = [LabelledFrame(f, i % 2, 'mel', f'i{i}', f'l{i}') for i, f in enumerate(rgbs)]
    bag = tmp_path / 'bag'
    assert write_bag(bag, frames, storage=storage, distro=distro) == 6
    info = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert info['version'] == version  # what that distro's rosbag2 writes itself
    rosbag2_decodes(info, distro if distro != 'kilted' else 'jazzy')
    if distro == 'humble':
        rosbag2_decodes(info, 'jazzy')  # v5 also plays on Jazzy and later (backward reading)
    else:
        with pytest.raises(AssertionError, match='humble reads offered_qos_profiles'):
            rosbag2_decodes(info, 'humble')
    assert len(list(read_frames(bag))) == 6 and len(ground_truth(bag)) == 6  # rosbags
    (storage_file,) = [bag / p for p in info['relative_file_paths']]
    if storage == 'mcap':
        from mcap.reader import make_reader

        with storage_file.open('rb') as f:
            reader = make_reader(f)
            assert reader.get_header().profile == 'ros2'
            schemas = {s.name: s.encoding for s in reader.get_summary().schemas.values()}
            assert schemas[IMAGE] == 'ros2msg'
            assert sum(1 for _ in reader.iter_messages(topics=['/image_raw'])) == 6
    else:  # the queries of rosbag2_storage_sqlite3 (schema 3, Humble)
        with sqlite3.connect(storage_file) as db:
            topics = db.execute(
                'SELECT id, name, type, serialization_format, offered_qos_profiles FROM topics'
            ).fetchall()
            assert {t[1] for t in topics} >= {'/image_raw', '/ground_truth'}
            assert db.execute('SELECT count(*) FROM messages').fetchone()[0] == 12
