"""Helpers for tests that run the nodes as separate processes and watch them from rclpy."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from skin_screening.launching import NodeSpec, child_setup

# What the probe subscribes with: deep enough that nothing a test sends is dropped.
RELIABLE = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)


def node_process(executable: str, name: str, env: dict, log_path, **params) -> subprocess.Popen:
    spec = NodeSpec('skin_screening', executable, name, params=params)
    return subprocess.Popen(
        spec.argv(),
        env=env,
        stdout=open(log_path, 'w'),
        stderr=subprocess.STDOUT,
        preexec_fn=child_setup,  # as the launcher: stoppable with SIGINT, dies with the tests
    )


def exit_code(proc: subprocess.Popen, timeout: float = 60) -> int | None:
    """The process' exit code within `timeout`, or None: then it is stopped (never leaked)."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        return None


def stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def probe_node(name: str = 'probe'):
    """An rclpy node spinning in a background thread of the test process."""
    rclpy.init()
    node = rclpy.create_node(name)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for {what}')
        time.sleep(0.05)


def model_with_variants(run_dir, model_dir, *precisions: str):
    """A copy of a training run's folder with its variants built (few calibration images)."""
    import shutil

    from training.variants import VariantConfig, build_variants

    shutil.copytree(run_dir, model_dir)
    build_variants(model_dir, VariantConfig(precisions=precisions, calibration_images=40))
    return model_dir


def diagnose_frames(
    model_dir,
    frames,
    env: dict,
    tmp_path,
    alerts: list | None = None,
    gate: list | None = None,
    **params,
) -> tuple[list, list]:
    """Run the inference node on `model_dir`, publish `frames` (stamps 1, 2, ... s; frames[0]
    also at stamp 0 first, to match) reliably and collect (every Diagnosis, the CAM images that
    arrived); with `alerts`, also the Alerts (up to 3 s after the last Diagnosis); with `gate`,
    the latched gate/status messages."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from skin_screening.core.frames import rgb_to_fields
    from skin_screening_msgs.msg import Diagnosis
    from std_msgs.msg import Header

    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    proc = node_process(
        'inference_node',
        'inference',
        env,
        tmp_path / 'node.log',
        model_dir=str(model_dir),
        reliable=True,
        queue_size=len(frames) + 8,
        **params,
    )
    got, cams = [], []
    try:
        with probe_node() as node:
            node.create_subscription(Diagnosis, 'diagnosis', got.append, reliable)
            node.create_subscription(Image, 'diagnosis/cam', cams.append, qos_profile_sensor_data)
            if alerts is not None:
                from skin_screening_msgs.msg import Alert

                node.create_subscription(Alert, 'alert', alerts.append, reliable)
            if gate is not None:
                from diagnostic_msgs.msg import DiagnosticStatus
                from skin_screening.nodes.common import alert_qos

                node.create_subscription(DiagnosticStatus, 'gate/status', gate.append, alert_qos())
            pub = node.create_publisher(Image, 'image_raw', reliable)
            wait_for(lambda: pub.get_subscription_count() > 0, 60, 'the inference node')
            answered(node, pub, got, frames[0])  # (stamp 0: left out of what is returned)
            for i, frame in enumerate(frames):
                stamp = Header().stamp.__class__(sec=i + 1)
                pub.publish(Image(header=Header(stamp=stamp), **rgb_to_fields(frame)))
            wait_for(
                lambda: sum(d.header.stamp.sec > 0 for d in got) == len(frames),
                60,
                f'{len(frames)} diagnoses',
            )
            if alerts is not None or gate is not None:
                time.sleep(3.0)  # published right after its Diagnosis: let it arrive
            if params.get('publish_cam'):
                wait_for(
                    lambda: sum(c.header.stamp.sec > 0 for c in cams) >= len(frames) - 1,
                    10,
                    'the CAM images',
                )
    finally:
        stop(proc)
    return [d for d in got if d.header.stamp.sec > 0], [c for c in cams if c.header.stamp.sec > 0]


def answered(node, pub, got: list, frame, timeout: float = 60.0):
    """Publish `frame` (stamp 0) until a Diagnosis of it arrives in `got`: then both directions
    (frames in, diagnoses back) are matched. Returns that Diagnosis."""
    from sensor_msgs.msg import Image
    from skin_screening.core.frames import rgb_to_fields
    from std_msgs.msg import Header

    image = Image(header=Header(), **rgb_to_fields(frame))
    deadline = time.monotonic() + timeout
    while True:
        pub.publish(image)
        try:
            wait_for(lambda: any(d.header.stamp.sec == 0 for d in got), 1.0, 'a first answer')
        except AssertionError:
            if time.monotonic() > deadline:
                raise AssertionError(f'no diagnosis within {timeout} s') from None
            continue
        return next(d for d in got if d.header.stamp.sec == 0)


def set_param(node, name: str, value):
    """Set one parameter of /inference through its service; returns the SetParametersResult."""
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    client = node.create_client(SetParameters, '/inference/set_parameters')
    assert client.wait_for_service(timeout_sec=10)
    if isinstance(value, str):
        typed = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    elif isinstance(value, int):
        typed = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    else:
        typed = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))
    future = client.call_async(
        SetParameters.Request(parameters=[ParameterMsg(name=name, value=typed)])
    )
    wait_for(future.done, 30, f'set {name} {value}')
    return future.result().results[0]


def image_msg(stamp_s: int, **fields):
    """A sensor_msgs/Image stamped `stamp_s` seconds, frame 'cam'."""
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    return Image(
        header=Header(frame_id='cam', stamp=Header().stamp.__class__(sec=stamp_s)), **fields
    )


def owner_only_modes(folder: Path) -> dict[str, int]:
    """Every path under `folder` (itself included) whose mode is not owner-only (folders 0700,
    files 0600) -> its mode; {} when all are."""
    import stat

    wrong = {}
    for path in [folder, *folder.rglob('*')]:
        want = 0o700 if path.is_dir() else 0o600
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode != want:
            wrong[str(path.relative_to(folder.parent))] = oct(mode)
    return wrong
