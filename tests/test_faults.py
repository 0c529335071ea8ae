"""Fault injection: nothing lost silently, no answer to a frame the node cannot read, no model
used that is not the card's, no node left running. Each test breaks ONE thing on purpose."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import psutil
import pytest
from skin_screening.core.classifier import Classifier
from skin_screening.core.engines import EngineError
from skin_screening.core.frames import message_to_rgb, rgb_to_fields
from skin_screening.core.model_card import ModelCard, ModelCardError, sha256_file
from skin_screening.core.preprocess import FrameError
from skin_screening.launching import dds_message_limit, parse_launch
from skin_screening.nodes.common import ReasonThrottle

from tests.conftest import REPO
from tests.nodes_helpers import exit_code, node_process, probe_node, stop, wait_for

# --- frames the node cannot read ---------------------------------------------------------------


@pytest.mark.parametrize(
    ('encoding', 'dtype', 'value'),
    [
        ('32FC3', np.float32, np.nan),  # NaN: once cast to black, it got p=0.0001 OTHER
        ('32FC3', np.float32, 0.5),  # a plain 0..1 float image: no defined 0..255 scale
        ('64FC3', np.float64, np.inf),
        ('16SC3', np.int16, 100),
    ],
)
def test_float_and_signed_frames_are_rejected(encoding, dtype, value):
    pixels = np.full((64, 64, 3), value, dtype)
    msg = SimpleNamespace(
        encoding=encoding,
        height=64,
        width=64,
        step=64 * 3 * pixels.itemsize,
        is_bigendian=0,
        data=pixels.tobytes(),
    )
    with pytest.raises(FrameError, match='no defined colour scale'):
        message_to_rgb(msg)


def test_sixteen_bit_colour_is_still_read():
    pixels = np.full((64, 64, 3), 65535, np.uint16)
    msg = SimpleNamespace(
        encoding='rgb16', height=64, width=64, step=384, is_bigendian=0, data=pixels.tobytes()
    )
    assert message_to_rgb(msg).min() == 255


def test_log_throttle_is_per_reason_not_per_call_site():
    now = [0.0]
    throttle = ReasonThrottle(5.0, clock=lambda: now[0])
    assert throttle('frame rejected: empty image (0x0, 0 bytes)')
    assert throttle('frame rejected: encoding mono8 is not a colour image')  # another reason
    assert not throttle('frame rejected: empty image (0x0, 3 bytes)')  # same reason, numbers
    now[0] = 5.1
    assert throttle('frame rejected: empty image (0x0, 0 bytes)')


# --- model integrity ---------------------------------------------------------------------------


@pytest.fixture
def model_copy(ham_model, tmp_path):
    folder = tmp_path / 'model'
    folder.mkdir()
    for name in ('model_card.json', 'model.fp32.onnx', 'model.int8-u8.onnx', 'gate.json'):
        shutil.copy(ham_model / name, folder)
    return folder


def test_model_id_is_the_hash_of_the_file_loaded(model_copy):
    clf = Classifier(model_copy, 'int8')
    digest = sha256_file(model_copy / 'model.int8-u8.onnx')
    assert clf.model_id == f'{ModelCard.load(model_copy).name}@{digest[:8]}'


def test_flipped_weight_bytes_are_refused(model_copy):
    path = model_copy / 'model.int8-u8.onnx'
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 5] = bytes(b ^ 0xFF for b in data[middle : middle + 5])
    path.write_bytes(bytes(data))
    with pytest.raises(ModelCardError, match='model.int8-u8.onnx does not match its model card'):
        Classifier(model_copy, 'int8')


def test_wrong_card_hash_stale_variant_and_unlisted_file_are_refused(model_copy):
    card_path = model_copy / 'model_card.json'
    card = json.loads(card_path.read_text())
    card['files']['model.fp32.onnx']['sha256'] = '0' * 64
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match='model.fp32.onnx does not match'):
        Classifier(model_copy, 'fp32')
    # the int8 file is intact, but built from another fp32 model than the card now names
    with pytest.raises(ModelCardError, match='stale variant'):
        Classifier(model_copy, 'int8')
    del card['files']['model.int8-u8.onnx']
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match='not listed in its model card'):
        ModelCard.load(model_copy).verify(model_copy / 'model.int8-u8.onnx')


def test_engine_and_card_that_do_not_match_are_refused(model_copy):
    card_path = model_copy / 'model_card.json'
    card = json.loads(card_path.read_text())
    card['preprocessing']['input_size'] = 112  # the file takes 224 x 224
    card_path.write_text(json.dumps(card))
    with pytest.raises(EngineError, match='engine and card do not match'):
        Classifier(model_copy, 'fp32')


def test_an_invalid_card_is_one_clear_error(model_copy):
    (model_copy / 'model_card.json').write_text('{"name": "x", "preprocessing": 3}')
    with pytest.raises(ModelCardError, match='is invalid'):
        Classifier(model_copy, 'fp32')


# --- transport limits --------------------------------------------------------------------------


def test_dds_message_limit_comes_from_the_profile(tmp_path):
    profile = tmp_path / 'p.xml'
    profile.write_text(
        '<dds xmlns="http://www.eprosima.com"><profiles><transport_descriptors>'
        '<transport_descriptor><transport_id>s</transport_id><type>SHM</type>'
        '<segment_size>2000000</segment_size><maxMessageSize>300000</maxMessageSize>'
        '</transport_descriptor></transport_descriptors></profiles></dds>'
    )
    assert dds_message_limit({'FASTDDS_DEFAULT_PROFILES_FILE': str(profile)})[0] == 300_000
    assert dds_message_limit({})[0] == 512 * 1024  # Fast DDS' default segment
    assert dds_message_limit({'RMW_IMPLEMENTATION': 'rmw_cyclonedds_cpp'}) is None
    shipped = {'FASTDDS_DEFAULT_PROFILES_FILE': str(REPO / 'launch' / 'fastdds.xml')}
    assert dds_message_limit(shipped)[0] == 16 * 1024 * 1024


@pytest.mark.ros
def test_camera_warns_once_on_frames_the_transport_cannot_carry(ros_env, tmp_path, ham_fullres):
    """600x450 rgb8 frames (810 KB) under a profile that carries 300 KB: one WARN, with the
    size and the limit. Both profile variables are set, as the launch files do: Kilted must not
    log the FASTRTPS_ deprecation warning."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    profile = tmp_path / 'small.xml'
    profile.write_text(
        (REPO / 'launch' / 'fastdds.xml')
        .read_text()
        .replace('<maxMessageSize>16777216', '<maxMessageSize>300000')
    )
    env = ros_env | {
        'FASTDDS_DEFAULT_PROFILES_FILE': str(profile),
        'FASTRTPS_DEFAULT_PROFILES_FILE': str(profile),
    }
    log = tmp_path / 'camera.log'
    statuses = []
    proc = node_process(
        'camera_node', 'camera', env, log, source=str(ham_fullres / 'images'), rate_hz=10.0
    )
    try:
        with probe_node() as node:
            node.create_subscription(
                DiagnosticArray, '/diagnostics', lambda m: statuses.extend(m.status), 10
            )
            wait_for(
                lambda: any(s.level == DiagnosticStatus.WARN for s in statuses),
                30,
                'the camera WARN',
            )
            # ten frames out (the camera's own count): the warning must not have repeated
            wait_for(
                lambda: any(
                    kv.key == 'frames_published' and int(kv.value) >= 10
                    for s in statuses
                    for kv in s.values
                ),
                30,
                'ten camera frames',
            )
    finally:
        stop(proc)
    text = log.read_text()
    assert text.count('over the 0.3 MB this transport carries') == 1, text
    assert '0.8 MB' in text and 'deprecated' not in text
    warn = next(s for s in statuses if s.level == DiagnosticStatus.WARN)
    assert '600x450 rgb8' in warn.message


# --- the inference node ------------------------------------------------------------------------


@pytest.mark.ros
def test_invalid_precision_is_one_error(ros_env, tmp_path, ham_model):
    log = tmp_path / 'log'
    proc = node_process(
        'inference_node',
        'inference',
        ros_env,
        log,
        model_dir=str(ham_model),
        precision='int4',
        fallback_backend='onnxruntime',  # as in wearable.launch.xml, equal to the backend
    )
    assert exit_code(proc) == 1
    assert log.read_text().count('unknown precision') == 1, log.read_text()


@pytest.mark.ros
def test_a_late_subscriber_still_gets_the_raised_alert(ros_env, tmp_path, ham_model, camera_top):
    """The alert is latched: a subscriber created AFTER the alert was raised receives it."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from skin_screening.nodes.common import alert_qos
    from skin_screening_msgs.msg import Alert
    from std_msgs.msg import Header

    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    alert_params = {'alert_window': 3, 'alert_min_frames': 3, 'alert_raise': 0.6}
    proc = node_process(
        'inference_node',
        'inference',
        ros_env,
        tmp_path / 'log',
        model_dir=str(ham_model),
        reliable=True,
        queue_size=10,
        **alert_params,
    )
    early, late = [], []
    try:
        with probe_node() as node:
            node.create_subscription(Alert, 'alert', early.append, alert_qos())
            pub = node.create_publisher(Image, 'image_raw', reliable)
            wait_for(lambda: pub.get_subscription_count() >= 1, 60, 'the inference node')
            for i, rgb in enumerate(camera_top[:3]):
                stamp = Header().stamp.__class__(sec=i + 1)
                pub.publish(Image(header=Header(stamp=stamp), **rgb_to_fields(rgb)))
            wait_for(lambda: len(early) == 1, 30, 'the alert, to the subscriber there from start')
            node.create_subscription(Alert, 'alert', late.append, alert_qos())
            wait_for(lambda: len(late) == 1, 30, 'the alert, to the late subscriber')
    finally:
        stop(proc)
    assert [(a.level, a.header.stamp.sec) for a in late] == [(Alert.SUSPICIOUS, 3)]
    assert late[0].frames == 3 and late[0].probability >= 0.6  # the window's mean


@pytest.fixture(scope='module')
def camera_top(ham_model, sample_frames):
    """The three embedded sample frames the shipped model finds most suspicious."""
    frames = sample_frames[0]
    probs = Classifier(ham_model).classify(frames)[0].probability
    return [frames[i] for i in np.argsort(-probs)[:3]]


# --- run.py and its processes ------------------------------------------------------------------


@pytest.mark.ros
@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_run_py_stops_every_node_it_started(ros_env, tmp_path, signum):
    proc = subprocess.Popen(
        [sys.executable, str(REPO / 'run.py'), '--out', str(tmp_path)]
        + ['--precisions', 'fp32', '--rate', '1'],  # 64 frames at 10 Hz: 6 s of replay
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    parent = psutil.Process(proc.pid)

    def nodes():
        found = []
        for child in parent.children():
            with contextlib.suppress(psutil.Error):  # one that just ended is not a node
                if 'skin_screening.nodes' in ' '.join(child.cmdline()):
                    found.append(child)
        return found

    launched = len(parse_launch(REPO / 'launch' / 'replay.launch.xml', {'bag': str(tmp_path)}))
    wait_for(lambda: len(nodes()) == launched, 120, f'the {launched} replay nodes')
    children = parent.children(recursive=True)
    os.kill(proc.pid, signum)
    try:
        _, err = proc.communicate(timeout=60)
    finally:  # never leave a run.py (or its nodes) behind, even when this test fails
        for p in [proc, *children]:
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                p.kill()
    assert proc.returncode == 130, err
    assert 'Traceback' not in err and 'interrupted' in err
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.cmdline() for p in alive]


def write_labelled_bag(path, images: list[dict]) -> None:
    """A labelled bag written with rosbags itself (not the project's writer): one Image per
    entry of `images` (sensor_msgs/Image fields) and its GroundTruth, 10 Hz."""
    from rosbags.rosbag2 import Writer
    from skin_screening.core.bags import GROUND_TRUTH, IMAGE, typestore

    store = typestore()
    T = store.types
    with Writer(path, version=9) as writer:
        image_conn = writer.add_connection('/image_raw', IMAGE, typestore=store)
        truth_conn = writer.add_connection('/ground_truth', GROUND_TRUTH, typestore=store)
        for i, fields in enumerate(images):
            t = 1_700_000_000_000_000_000 + i * 100_000_000
            stamp = T['builtin_interfaces/msg/Time'](sec=t // 10**9, nanosec=t % 10**9)
            header = T['std_msgs/msg/Header'](stamp=stamp, frame_id='cam')
            data = np.frombuffer(fields['data'], np.uint8)
            image = T[IMAGE](header=header, **(fields | {'data': data}))
            writer.write(image_conn, t, store.serialize_cdr(image, IMAGE))
            truth = T[GROUND_TRUTH](
                header=header, y=i % 2, label='x', image_id=f'i{i}', group_id='g'
            )
            writer.write(truth_conn, t, store.serialize_cdr(truth, GROUND_TRUTH))


@pytest.mark.ros
def test_a_replay_that_loses_a_frame_says_why_and_fails(ros_env, tmp_path, sample_frames):
    """One frame of six cannot be read (mono8): the replay accounts for it as rejected by the
    node, and run.py says so in one line and exits 3 instead of scoring a silent subset."""
    good = [rgb_to_fields(rgb) for rgb in sample_frames[0][:5]]
    mono = {
        'height': 150,
        'width': 200,
        'encoding': 'mono8',
        'is_bigendian': 0,
        'step': 200,
        'data': bytes(30000),
    }
    bag = tmp_path / 'bag'
    write_labelled_bag(bag, good[:3] + [mono] + good[3:])
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / 'run.py'),
            '--out',
            str(tmp_path / 'out'),
            '--bag',
            str(bag),
            '--precisions',
            'fp32',
        ],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 3, result.stderr[-3000:]
    assert (
        'fp32: 6 frames in the bag, 6 published, 5 answered, 5 recorded: 1 unanswered: '
        '1 rejected by the node' in result.stderr
    ), result.stderr[-3000:]
    (run,) = (tmp_path / 'out').glob('*-main')
    row = json.loads((run / 'results.json').read_text())['rows'][0]
    assert (row['n_complete'], row['answered'], row['unanswered']) == (False, 5, 1)
