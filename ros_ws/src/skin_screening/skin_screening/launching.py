"""Run the project's declarative ROS 2 launch files where `ros2 launch` is not installed.

Understands the subset the project's XML launch files use: <arg name default description>,
<set_env name value>, <node pkg exec name> with <param name value type>,
<param from=YAML>, <remap from to>, and the substitutions $(var NAME) and
$(find-pkg-share skin_screening). Anything else is refused with one line naming it, never
ignored. On a device, `ros2 launch` runs the same files (tests/test_device_path.py compares the
two). Nodes start as separate processes (python -m skin_screening.nodes.<module>).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PACKAGE = 'skin_screening'
DDS_PROFILE_VARIABLE = 'FASTDDS_DEFAULT_PROFILES_FILE'  # Fast DDS 3; 2.x: FASTRTPS_...
_SUBST = re.compile(r'\$\((var|find-pkg-share) ([^)]+)\)')


class LaunchError(ValueError):
    pass


def package_share() -> Path:
    """Where launch/ and data/models/ are: the repository root in a source checkout,
    share/skin_screening once colcon installed the package."""
    from .bootstrap import share_dir

    return share_dir(PACKAGE)


_RCLPY_MAJOR_DISTRO = {3: 'humble', 5: 'iron', 7: 'jazzy', 9: 'kilted'}


def ros_distro(env: Mapping[str, str] | None = None) -> str:
    """The ROS 2 distro of this environment: ROS_DISTRO (set by a sourced ROS install), else
    read from rclpy's version (PyPI wheels set no ROS_DISTRO); 'rolling' when unknown."""
    env = os.environ if env is None else env
    if env.get('ROS_DISTRO'):
        return env['ROS_DISTRO']
    import importlib.metadata

    try:
        major = int(importlib.metadata.version('rclpy').split('.')[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return 'rolling'
    return _RCLPY_MAJOR_DISTRO.get(major, 'rolling')


def ros_environment(
    base: Mapping[str, str] | None = None,
    domain: int | str | None = None,
    large_frames: bool = False,
) -> dict[str, str]:
    """Environment for ROS processes started here: discovery on this machine only, `domain` as
    ROS_DOMAIN_ID when given, and with `large_frames` the project's Fast DDS profile (frames
    over 512 KiB over shared memory, as the launch files set it; see launch/fastdds.xml)."""
    env = dict(os.environ if base is None else base)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    if ros_distro(env) in ('humble', 'iron'):  # they read only the old variable
        env['ROS_LOCALHOST_ONLY'] = '1'
    # Children run the code this process imported, even when a sourced colcon install puts
    # another copy of skin_screening on PYTHONPATH.
    own = str(Path(__file__).resolve().parents[1])
    env['PYTHONPATH'] = os.pathsep.join([own, *filter(None, [env.get('PYTHONPATH')])])
    if large_frames:
        profile = str(package_share() / 'launch' / 'fastdds.xml')
        env[DDS_PROFILE_VARIABLE] = profile
    if domain is not None:
        env['ROS_DOMAIN_ID'] = str(domain)
    return env


FASTDDS_DEFAULT_SHM_SEGMENT = 512 * 1024  # bytes: Fast DDS' default shared-memory segment


def dds_message_limit(env: Mapping[str, str] | None = None) -> tuple[int, str] | None:
    """(bytes, where the limit comes from) for the largest message Fast DDS delivers reliably
    between processes of this machine, or None when another RMW is in use (limit unknown).

    With a profile (FASTDDS_/FASTRTPS_DEFAULT_PROFILES_FILE), its shared-memory transport's
    segment_size and maxMessageSize bound it; without one, the default 512 KiB segment does
    (larger frames fall back to fragmented UDP, where best-effort frames are mostly lost).
    """
    env = os.environ if env is None else env
    if 'fastrtps' not in env.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp'):
        return None
    profile = env.get(DDS_PROFILE_VARIABLE) or env.get('FASTRTPS_DEFAULT_PROFILES_FILE')
    if not profile:
        return FASTDDS_DEFAULT_SHM_SEGMENT, "Fast DDS' default 512 KiB shared-memory segment"
    try:
        root = ET.parse(profile).getroot()
    except (ET.ParseError, OSError):
        return None
    limits = []
    for desc in root.iter():
        if desc.tag.split('}')[-1] != 'transport_descriptor':
            continue
        fields = {child.tag.split('}')[-1]: (child.text or '').strip() for child in desc}
        if fields.get('type') == 'SHM':
            limits += [int(fields[k]) for k in ('segment_size', 'maxMessageSize') if k in fields]
    if not limits:
        return FASTDDS_DEFAULT_SHM_SEGMENT, f'{profile} (no SHM transport: the default segment)'
    return min(limits), f'{profile} (SHM segment_size / maxMessageSize)'


@dataclass
class NodeSpec:
    package: str
    executable: str
    name: str
    params: dict[str, object] = field(default_factory=dict)
    param_files: list[Path] = field(default_factory=list)
    remaps: list[tuple[str, str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    namespace: str = ''  # '' = the launcher's (/)

    @property
    def module(self) -> str:
        if self.package != PACKAGE or not self.executable.endswith('_node'):
            raise LaunchError(f'unknown executable {self.package}/{self.executable}')
        return f'{PACKAGE}.nodes.{self.executable[: -len("_node")]}'

    def file_params(self) -> dict[str, object]:
        """Parameters for this node from its YAML files, by the keys rcl matches for a node
        without namespace: /**, /**/<name>, <name>, /<name> (later keys and files win)."""
        merged: dict[str, object] = {}
        for path in self.param_files:
            data = yaml.safe_load(path.read_text()) or {}
            for key in ('/**', f'/**/{self.name}', self.name, f'/{self.name}'):
                merged.update((data.get(key) or {}).get('ros__parameters', {}))
        return merged

    def all_params(self) -> dict[str, object]:
        return self.file_params() | self.params

    def argv(self) -> list[str]:
        args = [sys.executable, '-m', self.module, '--ros-args', '-r', f'__node:={self.name}']
        if self.namespace:
            args += ['-r', f'__ns:={self.namespace}']
        for path in self.param_files:
            args += ['--params-file', str(path)]
        for key, value in self.params.items():
            args += ['-p', f'{key}:={_ros_value(value)}']
        for old, new in self.remaps:
            args += ['-r', f'{old}:={new}']
        return args


def _ros_value(value: object) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str) and (value == '' or _typed(value) != value):  # '', '123', 'true'
        return yaml.safe_dump(value, default_style="'").strip()
    return str(value)


_TYPES = {'str': str, 'int': int, 'float': float, 'bool': bool}


def _typed(text: str, type_name: str | None = None) -> object:
    """A launch-file value as ROS types it: with type="str|int|float|bool" that type; without,
    YAML rules (1 -> int, 1.0 -> float, true -> bool, anything else a string)."""
    if type_name is not None:
        if type_name not in _TYPES:
            raise LaunchError(f'param type {type_name!r} is not supported here')
        if type_name == 'str':
            return text
        value = yaml.safe_load(text) if text.strip() else None
        if _TYPES[type_name] is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, _TYPES[type_name]) or (
            type_name != 'bool' and isinstance(value, bool)
        ):
            raise LaunchError(f'{text!r} is not a {type_name}')
        return value
    value = yaml.safe_load(text) if text != '' else ''
    return value if isinstance(value, (bool, int, float)) else text


# What this stand-in implements: every other element, attribute or value is refused, so a
# launch file never means one thing here and another under `ros2 launch`.
_ALLOWED = {
    'launch': set(),
    'arg': {'name', 'default', 'description'},
    'set_env': {'name', 'value'},
    'node': {'pkg', 'exec', 'name'},  # no on_exit: Humble's launch refuses it too
    'param': {'name', 'value', 'type', 'from'},
    'remap': {'from', 'to'},
}
_CHILDREN = {'launch': {'arg', 'set_env', 'node'}, 'node': {'param', 'remap'}}


def _check(element: ET.Element, where: str) -> None:
    extra = set(element.attrib) - _ALLOWED.get(element.tag, set())
    if element.tag not in _ALLOWED or extra:
        what = f'<{element.tag}>' + (f' attribute(s) {sorted(extra)}' if extra else '')
        raise LaunchError(
            f'{where}: {what} is not supported by this launcher (use `ros2 launch`, or keep '
            'to: ' + ', '.join(f'<{t}>' for t in _ALLOWED if t != 'launch') + ')'
        )
    allowed_children = _CHILDREN.get(element.tag, set())
    for child in element:
        if child.tag not in allowed_children:
            raise LaunchError(f'{where}: <{child.tag}> inside <{element.tag}> is not supported')
        _check(child, where)


def parse_launch(path: str | Path, args: dict[str, str] | None = None) -> list[NodeSpec]:
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise LaunchError(f'cannot read launch file {path}: {exc}') from exc
    _check(root, path.name)
    given = {k: str(v) for k, v in (args or {}).items()}
    values: dict[str, str] = {}
    env: dict[str, str] = {}

    def sub(text: str) -> str:
        def one(match: re.Match) -> str:
            kind, name = match.groups()
            if kind == 'var':
                if name not in values:
                    raise LaunchError(f'{path.name}: argument {name!r} has no value')
                return values[name]
            if name != PACKAGE:
                raise LaunchError(f'{path.name}: cannot find package {name}')
            return str(package_share())

        rest = _SUBST.sub('', text)
        if '$(' in rest:
            raise LaunchError(f'{path.name}: substitution in {text!r} is not supported here')
        return _SUBST.sub(one, text)

    nodes = []
    for element in root:
        if element.tag == 'arg':
            name = element.get('name')
            if name in given:
                values[name] = given[name]
            elif element.get('default') is not None:
                values[name] = sub(element.get('default'))
            else:
                raise LaunchError(f'{path.name}: argument {name!r} is required')
        elif element.tag == 'set_env':
            env[element.get('name')] = sub(element.get('value'))
        else:
            spec = NodeSpec(
                element.get('pkg'),
                element.get('exec'),
                element.get('name') or element.get('exec'),
                env=dict(env),
            )
            for child in element:
                if child.tag == 'param' and child.get('from'):
                    spec.param_files.append(Path(sub(child.get('from'))))
                elif child.tag == 'param':
                    try:
                        value = _typed(sub(child.get('value')), child.get('type'))
                    except LaunchError as exc:
                        where = f'{path.name}: {spec.name}.{child.get("name")}'
                        raise LaunchError(f'{where}: {exc}') from None
                    spec.params[child.get('name')] = value
                else:
                    spec.remaps.append((sub(child.get('from')), sub(child.get('to'))))
            nodes.append(spec)
    unknown = set(given) - set(values)
    if unknown:
        raise LaunchError(f'{path.name}: unknown launch arguments {sorted(unknown)}')
    return nodes


def die_with_parent() -> None:
    """On Linux, have the kernel send this process SIGTERM when the process that started it
    dies, even by SIGKILL (PR_SET_PDEATHSIG). Every node calls it at start: `ros2 launch`
    killed by SIGTERM (launch 3.x does not forward it) or SIGKILL leaves no node running."""
    if sys.platform == 'linux':
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def child_setup() -> None:
    """In a node's process before exec: SIGINT and SIGTERM back to their defaults (a launcher
    started in the background by a shell without job control has SIGINT ignored, and children
    inherit that: Ctrl-C and the stop signal would not reach the nodes), and die_with_parent():
    no process outlives its launcher."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()


def start(nodes: list[NodeSpec], env: dict[str, str] | None = None, log_dir: Path | None = None):
    """Start every node as its own process (local-only discovery); returns {name: Popen}."""
    env = ros_environment(env)
    procs = {}
    for spec in nodes:
        out = open(log_dir / f'{spec.name}.log', 'w') if log_dir else subprocess.DEVNULL
        procs[spec.name] = subprocess.Popen(
            spec.argv(),
            env=env | spec.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=child_setup,
        )
    return procs
