"""The declarative launch files: executables exist, parameters are declared with their types,
referenced files exist. Nodes are constructed in-process with the launch's parameters."""

import importlib.util
import re
from pathlib import Path

import pytest
import rclpy
from rclpy.parameter import Parameter
from skin_screening.core.bags import LabelledFrame, write_bag
from skin_screening.launching import LaunchError, package_share, parse_launch

LAUNCH = package_share() / 'launch'
SETUP = package_share() / 'ros_ws/src/skin_screening/setup.py'
FILES = sorted(LAUNCH.glob('*.launch.xml'))


def declared_executables() -> set[str]:
    nodes = re.search(r'NODES = \[(.*?)\]', SETUP.read_text(), re.S).group(1)
    return {f'{n}_node' for n in re.findall(r"'(\w+)'", nodes)}


def node_class(spec):
    module = importlib.import_module(spec.module)
    return next(v for k, v in vars(module).items() if k.endswith('Node') and k != 'Node')


@pytest.fixture
def launch_args(tmp_path, sample_frames):
    bag = tmp_path / 'bag'
    write_bag(bag, [LabelledFrame(sample_frames[0][0], 1, 'mel', 'a', 'L')])
    return {
        'replay.launch.xml': {'bag': str(bag), 'output_dir': str(tmp_path / 'runs')},
        'wearable.launch.xml': {'output_dir': str(tmp_path / 'runs'), 'camera': str(tmp_path)},
    }


def test_there_are_a_device_and_a_replay_launch_file():
    assert {f.name for f in FILES} == {'wearable.launch.xml', 'replay.launch.xml'}


@pytest.mark.parametrize('path', FILES, ids=lambda p: p.name)
def test_executables_exist_and_files_referenced_exist(path, launch_args):
    for spec in parse_launch(path, launch_args[path.name]):
        assert spec.executable in declared_executables(), spec.executable
        assert importlib.util.find_spec(spec.module) is not None
        for param_file in spec.param_files:
            assert param_file.is_file(), param_file
        for key, value in spec.all_params().items():
            if key in ('model_dir', 'bag'):
                assert Path(value).exists(), f'{spec.name}.{key} -> {value}'
        for name in ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE'):
            assert Path(spec.env[name]).is_file(), f'{spec.name}: {name} -> {spec.env[name]}'


@pytest.mark.ros
@pytest.mark.parametrize('path', FILES, ids=lambda p: p.name)
def test_every_parameter_is_declared_with_its_type(path, launch_args, ros_env):
    rclpy.init()
    try:
        for spec in parse_launch(path, launch_args[path.name]):
            params = spec.all_params()
            overrides = [Parameter(k, value=v) for k, v in params.items()]
            node = node_class(spec)(parameter_overrides=overrides)
            try:
                for key, value in params.items():
                    assert node.has_parameter(key), f'{spec.name} does not declare {key}'
                    assert node.get_parameter(key).value == value, f'{spec.name}.{key}'
            finally:
                getattr(node, 'close', lambda: None)()
                node.destroy_node()
    finally:
        rclpy.try_shutdown()


def test_launch_errors_are_clear(tmp_path):
    with pytest.raises(LaunchError, match="argument 'bag' is required"):
        parse_launch(LAUNCH / 'replay.launch.xml')
    with pytest.raises(LaunchError, match='unknown launch arguments'):
        parse_launch(LAUNCH / 'wearable.launch.xml', {'precison': 'int8'})


@pytest.mark.ros
def test_wearable_launch_runs_as_a_system(no_tensorrt_env, tmp_path):
    """wearable.launch.xml started as a whole (camera on a folder of real images, its default
    TensorRT backend hidden, so the file's fallback backend serves): diagnoses at the file's
    int8 precision reach a subscriber and the recorder, and every node stops on SIGINT."""
    import csv
    import shutil

    from diagnostic_msgs.msg import DiagnosticArray
    from skin_screening.launching import start
    from skin_screening_msgs.msg import Diagnosis

    from tests.conftest import SAMPLES
    from tests.nodes_helpers import probe_node, stop, wait_for

    camera = tmp_path / 'camera'
    camera.mkdir()
    for path in sorted((SAMPLES / 'images').glob('*.jpg'))[:6]:
        shutil.copy(path, camera)
    nodes = parse_launch(
        LAUNCH / 'wearable.launch.xml',
        {'camera': str(camera), 'output_dir': str(tmp_path / 'runs')},
    )
    for spec in nodes:
        if spec.name == 'camera':
            spec.params |= {'rate_hz': 5.0, 'min_subscribers': 1}  # the inference node
    got = []
    logs = tmp_path / 'logs'
    logs.mkdir()
    procs = start(nodes, no_tensorrt_env, logs)
    try:
        with probe_node() as node:
            from rclpy.qos import QoSProfile, ReliabilityPolicy

            qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
            node.create_subscription(Diagnosis, 'diagnosis', got.append, qos)
            rows = []
            node.create_subscription(
                DiagnosticArray,
                '/diagnostics',
                lambda m: rows.extend(
                    int(kv.value)
                    for s in m.status
                    if s.name.endswith(': recorder')
                    for kv in s.values
                    if kv.key == 'diagnoses_rows'
                ),
                qos,
            )
            wait_for(lambda: len(got) >= 5, 90, '5 diagnoses from the wearable system')
            wait_for(lambda: rows and rows[-1] >= 5, 30, 'the recorder to hold 5 rows')
    finally:
        stop(*procs.values())
    assert {(d.precision, d.backend) for d in got} == {('int8', 'onnxruntime')}
    assert {d.header.frame_id for d in got} == {'wearable_camera'}
    (recorded,) = (tmp_path / 'runs').glob('*wearable-int8*/diagnoses.csv')
    assert len(list(csv.DictReader(recorded.open()))) >= 5
    assert 'fell back to onnxruntime' in (logs / 'inference.log').read_text()
    assert all(p.returncode in (0, -2) for p in procs.values())
    assert not any('Traceback' in f.read_text() for f in logs.glob('*.log'))


def test_the_wearable_decides_at_the_clinical_screening_point(launch_args):
    """The camera takes clinical photographs: its launch picks the card's clinical 'screening'
    point (its own calibration and threshold), not the dermoscopic one replays use."""
    from skin_screening.core.model_card import ModelCard

    wearable = parse_launch(LAUNCH / 'wearable.launch.xml', launch_args['wearable.launch.xml'])
    params = next(s for s in wearable if s.name == 'inference').all_params()
    points = ModelCard.load(params['model_dir']).operating_points['points']
    point = points[params['operating_point']]
    assert point['domain'] == 'clinical' and point['criterion'] == 'recall >= 0.90'
