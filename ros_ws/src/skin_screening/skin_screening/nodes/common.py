"""What every node shares: message <-> dict conversion, parameter descriptors, QoS, main()."""

from __future__ import annotations

import importlib
import math
import os
import re
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..core.sessions import owner_only


def message_type(name: str) -> type:
    """'skin_screening_msgs/msg/Diagnosis' (or 'pkg/Type') -> the rclpy message class."""
    parts = name.split('/')
    pkg, kind, cls = (parts[0], 'msg', parts[1]) if len(parts) == 2 else parts
    return getattr(importlib.import_module(f'{pkg}.{kind}'), cls)


def message_to_dict(msg: Any) -> Any:
    """A plain-Python (JSON-friendly) copy of an rclpy message, recursively."""
    if hasattr(msg, 'get_fields_and_field_types'):
        return {f: message_to_dict(getattr(msg, f)) for f in msg.get_fields_and_field_types()}
    if isinstance(msg, (list, tuple)):
        return [message_to_dict(m) for m in msg]
    if hasattr(msg, 'tolist'):
        return msg.tolist()
    if isinstance(msg, (bytes, bytearray)):
        return list(msg)
    return msg


def dict_to_message(cls: type, data: dict) -> Any:
    """Build an rclpy message from message_to_dict() output (nested messages and lists too)."""
    msg = cls()
    types = msg.get_fields_and_field_types()
    for field, value in data.items():
        if field not in types:
            raise KeyError(f'{cls.__name__} has no field {field!r}')
        current = getattr(msg, field)
        if isinstance(value, dict):
            value = dict_to_message(type(current), value)
        elif isinstance(value, list) and '<' in types[field] and '/' in types[field]:
            inner = types[field].split('<', 1)[1].rstrip('>').split(',')[0]
            value = [dict_to_message(message_type(inner), v) for v in value]
        setattr(msg, field, value)
    return msg


class ReasonThrottle:
    """Rate-limits log lines per REASON, not per call site: rejections of different kinds in
    quick succession are each logged, a flood of one kind once per `period_s`. The reason is the
    text with its numbers masked ('frame 30x20 ...' and 'frame 31x20 ...' are one reason)."""

    def __init__(self, period_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.period_s, self._clock = period_s, clock
        self._last: dict[str, float] = {}

    def __call__(self, text: str) -> bool:
        """True when `text` should be logged now."""
        reason, now = re.sub(r'\d+(\.\d+)?', '#', text), self._clock()
        last = self._last.get(reason)
        if last is not None and now - last < self.period_s:
            return False
        self._last[reason] = now
        return True


REPLAY_END_TOPIC = 'replay/end'  # std_msgs/Empty, latched: the bag player's replay is over


class StopRequested(Exception):
    """Raised in a callback to end rclpy.spin(): run_node() then closes the node cleanly."""


def exit_with_replay(node: Any) -> None:
    """Declare the node's `exit_with_replay` parameter; when true (replay.launch.xml), the node
    ends, cleanly and with exit code 0, once the bag player announces the end of the replay on
    REPLAY_END_TOPIC. With every process gone the launch ends, under Humble's launch too (its
    XML has no on_exit="shutdown") and the project's stand-in alike."""
    from std_msgs.msg import Empty

    text = 'End this node when the bag player announces the end of the replay.'
    if node.declare_parameter('exit_with_replay', False, descriptor(text, read_only=True)).value:

        def stop(_msg) -> None:
            node.get_logger().info('replay ended: stopping')
            raise StopRequested

        node.create_subscription(Empty, REPLAY_END_TOPIC, stop, alert_qos())


def alert_qos(depth: int = 1) -> Any:
    """QoS of the `alert` topic: the current alert is latched (reliable, transient local, depth 1
    on the publisher), so a subscriber that joins late (a downstream node started after the
    alert was raised, a recorder whose discovery took seconds) still gets it. A subscriber that
    must see every change, not only the latest (recorder, findings), reads with a deeper queue
    (`depth`): a raise and its clear arriving while it is busy would otherwise leave only the
    clear."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


def descriptor(
    description: str,
    *,
    read_only: bool = False,
    float_range: tuple[float, float] | None = None,
    int_range: tuple[int, int] | None = None,
    choices: Sequence[str] | None = None,
) -> Any:
    """A ParameterDescriptor with an optional numeric range or list of allowed strings."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    text = description + (f' One of: {", ".join(choices)}.' if choices else '')
    desc = ParameterDescriptor(description=text, read_only=read_only)
    if float_range is not None:
        desc.floating_point_range = [
            FloatingPointRange(from_value=float(float_range[0]), to_value=float(float_range[1]))
        ]
    if int_range is not None:
        desc.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)]
    return desc


def diagnostics(
    node: Any, kind: str, level: bytes, message: str, hardware_id: str, values: dict[str, object]
) -> Any:
    """A DiagnosticArray with one status named '<node name>: <kind>', stamped now; its last
    value is the node's namespace (a replay's nodes share one of their own: its bag player
    reads only their statuses, whatever else runs on the same ROS domain)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from std_msgs.msg import Header

    values = values | {'namespace': node.get_namespace()}
    status = DiagnosticStatus(
        level=level,
        name=f'{node.get_name()}: {kind}',
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
    )
    return DiagnosticArray(header=Header(stamp=node.get_clock().now().to_msg()), status=[status])


LEGACY_PROFILE_VARIABLE = 'FASTRTPS_DEFAULT_PROFILES_FILE'


def reads_legacy_profile_variable() -> bool:
    """True on distros whose Fast DDS 2.x reads FASTRTPS_DEFAULT_PROFILES_FILE (Humble, Iron,
    Jazzy); Kilted and later (Fast DDS 3) read FASTDDS_... and warn on the old name."""
    from ..launching import ros_distro

    return ros_distro() in ('humble', 'iron', 'jazzy')


def init_ros(args: Sequence[str] | None = None) -> None:
    """rclpy.init() after dropping the DDS profile variable this distro does not read (the
    launch files set both so one file serves Humble to Kilted; Kilted warns on the old one), with
    SIGINT handled even when the process was started with it ignored, and SIGTERM when the
    launcher dies (die_with_parent)."""
    import rclpy

    from ..launching import die_with_parent

    die_with_parent()
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # inherited: Ctrl-C must still stop it
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.environ.get(LEGACY_PROFILE_VARIABLE) and not reads_legacy_profile_variable():
        os.environ.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', os.environ[LEGACY_PROFILE_VARIABLE])
        del os.environ[LEGACY_PROFILE_VARIABLE]
    rclpy.init(args=args)


def run_node(factory: Callable[[], Any], args: Sequence[str] | None = None) -> None:
    """Thin main(): init, spin until Ctrl-C/SIGTERM, always destroy the node and shut down."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    owner_only()  # what the nodes write (skin photographs, their records): 0600 / 0700
    init_ros(args)
    node = None
    try:
        node = factory()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException, StopRequested):
        pass
    finally:
        # Ctrl-C under `ros2 launch` arrives twice (from the terminal, then from launch): the
        # second must not cut the clean-up short. launch escalates to SIGTERM/SIGKILL anyway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            close = getattr(node, 'close', None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
