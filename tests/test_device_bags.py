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


def write(path, topics: dict, storage='mcap', version=9):
    """A rosbag2 with `topics`: name -> list of (msgtype, fields), 10 Hz."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = typestore()
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    with Writer(path, version=version, storage_plugin=plugin) as writer:
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


def test_damaged_bags_are_refused_before_anything_starts(rgbs, tmp_path, ros_env):
    bag = write(tmp_path / 'bag', {'/camera/image': [image(f, 'rgb8') for f in rgbs]})
    storage = next(bag.glob('*.mcap'))
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size * 55 // 100])
    truncated, seconds = run_py(bag, tmp_path, ros_env)
    assert truncated.returncode == 2 and seconds < 2.0
    assert 'cannot open bag' in truncated.stderr and 'magic' in truncated.stderr
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
