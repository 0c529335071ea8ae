"""The rclpy API the nodes use, against what Humble's rclpy (3.3, Jetson Orin boards) offers.

The tests here run Kilted's rclpy; the launch files are also run under Humble's launch
(tests/test_device_path.py), but Humble's rclpy cannot be installed here. So the API is checked
against Humble's documentation (docs.ros.org/en/humble/p/rclpy/), listed below: a node that starts
using anything else fails this test until someone checks it exists in Humble or guards it.
"""

import ast
from pathlib import Path

import skin_screening

NODES = Path(skin_screening.__file__).parent / 'nodes'

# name -> where Humble documents it (all present in rclpy 3.3.x)
HUMBLE = {
    'rclpy.init': 'rclpy.html (init)',
    'rclpy.ok': 'rclpy.html (ok)',
    'rclpy.spin': 'rclpy.html (spin)',
    'rclpy.spin_once': 'rclpy.html (spin_once)',
    'rclpy.try_shutdown': 'rclpy.html (try_shutdown, since Galactic)',
    'rclpy.logging.get_logger': 'api/logging.html',
    'rclpy.node.Node': 'api/node.html',
    'rclpy.duration.Duration': 'api/time.html (Duration)',
    'rclpy.executors.ExternalShutdownException': 'api/execution_and_callbacks.html',
    'rclpy.qos.QoSProfile': 'api/qos.html',
    'rclpy.qos.ReliabilityPolicy': 'api/qos.html',
    'rclpy.qos.DurabilityPolicy': 'api/qos.html',
    'rclpy.qos.qos_profile_sensor_data': 'api/qos.html',
    # methods, on Node / Publisher / Context / RcutilsLogger
    '.add_on_set_parameters_callback': 'api/node.html',
    '.create_publisher': 'api/node.html',
    '.create_subscription': 'api/node.html',
    '.create_timer': 'api/node.html',
    '.declare_parameter': 'api/node.html (descriptor with read_only, ranges)',
    '.destroy_node': 'api/node.html',
    '.get_clock': 'api/node.html',
    '.get_logger': 'api/node.html',
    '.get_name': 'api/node.html',
    '.get_namespace': 'api/node.html',
    '.get_parameter': 'api/node.html',
    '.resolve_topic_name': 'api/node.html (since Galactic)',
    '.get_subscription_count': 'api/topics.html (Publisher)',
    '.wait_for_all_acked': 'api/topics.html (Publisher, since Galactic)',
    '.publish': 'api/topics.html (Publisher)',
    '.ok': 'api/context.html (Context.ok)',
    '.throttle_duration_sec': 'api/logging.html (RcutilsLogger.log keyword)',
    '.info': 'api/logging.html (RcutilsLogger.info)',
    '.warning': 'api/logging.html (RcutilsLogger.warning)',
    '.error': 'api/logging.html (RcutilsLogger.error)',
    '.now': 'api/time.html (Clock.now)',
    '.to_msg': 'api/time.html (Time.to_msg)',
}
# Methods the nodes call on plain Python objects they hold (dicts, deques, threads, events):
# not rclpy. Any other method called on `self` or `node` must be the project's own or listed
# in HUMBLE.
PYTHON = {
    '.append',
    '.get',
    '.glob',
    '.is_set',
    '.items',
    '.join',
    '.notify',
    '.notify_all',
    '.pop',
    '.popitem',
    '.popleft',
    '.set',
    '.start',
    '.update',
    '.wait',
}


def dotted(node: ast.expr) -> str | None:
    """'a.b.c' for a chain of plain names, None when a call or subscript is part of it."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f'{base}.{node.attr}' if base else None
    return None


def _root(node: ast.expr) -> str | None:
    """The name a chain of attributes, calls and subscripts starts from (self.a.b().c -> self)."""
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def project_names() -> tuple[set[str], set[str]]:
    """(every function and method the package defines, the attributes it sets on `self`:
    callables it holds, e.g. self._clock = clock)."""
    functions, attributes = set(), set()
    for path in NODES.parent.rglob('*.py'):
        for item in ast.walk(ast.parse(path.read_text())):
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.add(f'.{item.name}')
            elif isinstance(item, ast.Attribute) and isinstance(item.ctx, ast.Store):
                if _root(item) == 'self':
                    attributes.add(f'.{item.attr}')
    return functions, attributes


def used() -> set[str]:
    """rclpy names the nodes import or call, and EVERY method they call on `self` or `node` (or
    on what those hold or return) that the package does not define itself."""
    names, (functions, attributes) = set(), project_names()
    for path in NODES.glob('*.py'):
        for item in ast.walk(ast.parse(path.read_text())):
            if isinstance(item, ast.ImportFrom) and (item.module or '').startswith('rclpy'):
                names |= {f'{item.module}.{alias.name}' for alias in item.names}
            elif isinstance(item, ast.Attribute):
                name = dotted(item)
                if name and name.startswith('rclpy.'):
                    names.add(name)
            elif isinstance(item, ast.Call) and isinstance(item.func, ast.Attribute):
                name, direct = f'.{item.func.attr}', isinstance(item.func.value, ast.Name)
                own = functions | attributes if direct else functions  # self.x() / self.a.x()
                if _root(item.func) in ('self', 'node') and name not in own:
                    names.add(name)
            elif isinstance(item, ast.keyword) and item.arg == 'throttle_duration_sec':
                names.add('.throttle_duration_sec')
    return {n for n in names if not any(m.startswith(n + '.') for m in names)}


def test_every_rclpy_api_the_nodes_use_is_in_humble():
    missing = used() - set(HUMBLE) - PYTHON
    assert not missing, f'check these against Humble rclpy and list them: {sorted(missing)}'


def test_the_scan_sees_the_apis():
    assert {'rclpy.spin', '.wait_for_all_acked', '.create_publisher', '.now', '.info'} <= used()
    assert '.attach' not in used()  # the findings store's own method, not rclpy
