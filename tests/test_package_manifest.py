"""package.xml names every library the installed package imports (what `rosdep install` reads),
and the README names the one command for those without a rosdep key."""

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import skin_screening

from tests.conftest import REPO

PACKAGE = Path(skin_screening.__file__).parent
MANIFEST = REPO / 'ros_ws' / 'src' / 'skin_screening' / 'package.xml'

# imported module -> its rosdep key (checked in ros/rosdistro rosdep/python.yaml), or how the
# device gets it when there is none
ROSDEP = {
    'numpy': 'python3-numpy',
    'cv2': 'python3-opencv',
    'yaml': 'python3-yaml',
    'onnxruntime': 'python3-onnxruntime-pip',
    'scipy': 'python3-scipy',
    'sklearn': 'python3-sklearn',
    'tqdm': 'python3-tqdm',
    'matplotlib': 'python3-matplotlib',
    'ament_index_python': 'ament_index_python',
}
NO_KEY = {
    'rosbags': 'pip install rosbags',
    'lz4': 'pip install rosbags',  # rosbags' own dependencies (mcap chunk compression)
    'backports': 'pip install rosbags',
    'compression': 'pip install rosbags',
    'tensorrt': 'JetPack',
    'pycuda': 'JetPack',
    'pynvml': 'optional (desktop GPUs)',
}


def imported_modules() -> set[str]:
    names = set()
    for path in PACKAGE.rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split('.')[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split('.')[0])
    return names - set(sys.stdlib_module_names) - {'skin_screening', '__future__'}


def declared() -> set[str]:
    root = ET.parse(MANIFEST).getroot()
    return {e.text for e in root if e.tag in ('depend', 'exec_depend')}


def test_every_import_is_declared_by_its_rosdep_key_or_named_in_the_readme():
    deps = declared()
    for module in sorted(imported_modules()):
        if module in NO_KEY:
            assert (
                NO_KEY[module].startswith(('JetPack', 'optional'))
                or NO_KEY[module] in (REPO / 'README.md').read_text()
            ), module
            continue
        key = ROSDEP.get(module, module)  # ROS packages: the key is the package name
        assert key in deps, f'{module} is imported but package.xml does not declare {key}'


def test_nothing_is_declared_that_is_not_used():
    used = {ROSDEP.get(m, m) for m in imported_modules()}
    assert declared() - used == set()
