"""What every node shares: message <-> dict conversion, stamps, parameter descriptors, main()."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any


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


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


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
    """A DiagnosticArray with one status named '<node name>: <kind>', stamped now."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from std_msgs.msg import Header

    status = DiagnosticStatus(
        level=level,
        name=f'{node.get_name()}: {kind}',
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
    )
    return DiagnosticArray(header=Header(stamp=node.get_clock().now().to_msg()), status=[status])


def run_node(factory: Callable[[], Any], args: Sequence[str] | None = None) -> None:
    """Thin main(): init, spin until Ctrl-C/SIGTERM, always destroy the node and shut down."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    node = None
    try:
        node = factory()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, 'close', None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
