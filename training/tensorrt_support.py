"""What can be proven about the TensorRT path without TensorRT: names and parser support.

TensorRT's libraries cannot be installed here, but its compiled Python bindings can be read:
PyPI publishes them as small wheels (tensorrt-bindings / tensorrt-cu12-bindings). Their pybind11
module carries every bound Python name in its string table, so:

* `bindings(version)` downloads (pip, by package name; cached; sha256 pinned) the bindings of
  TensorRT 8.6.1 (JetPack 6.0/6.1), 10.3.0 (JetPack 6.2) and 11.4 (newest) and answers `has(name)`.
  A name is bound when it ends a NUL-terminated string of the module (the linker merges string
  tails: "INT8" may live inside "kINT8") or is defined by the wheel's __init__.py (nptype,
  __version__). Absence is therefore proven exactly; presence is necessary-condition evidence.
* `backend_names()` parses core/engines/tensorrt.py (the AST, no hand list) for every attribute
  it reads from TensorRT objects and every feature it probes with hasattr.
* `restricted(fake, names)` wraps a behavioural fake so that it offers ONLY the names the real
  version binds: the backend's version branches then run against the real name sets.
* `op_problems(model, version)` checks an ONNX variant against onnx-tensorrt's operator support
  matrix for that release (training/tensorrt_ops.yaml): operators, opset, node domains, and the
  Q/DQ attributes TensorRT restricts (zero points 0 and int8, per-channel scales only on axis 0
  of constant weights).
"""

from __future__ import annotations

import ast
import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BACKEND = REPO / 'ros_ws/src/skin_screening/skin_screening/core/engines/tensorrt.py'
OPS_FILE = Path(__file__).with_name('tensorrt_ops.yaml')

# version -> (PyPI requirement, wheel file, sha256): the compiled bindings only (no libnvinfer).
WHEELS = {
    '8.6.1': (
        'tensorrt-bindings==8.6.1',
        'tensorrt_bindings-8.6.1-cp311-none-manylinux_2_17_x86_64.whl',
        '705cfab5c60f0bed7d939559d880165a761bd9ac0f4203004948a760eef99838',
    ),
    '10.3.0': (
        'tensorrt-cu12-bindings==10.3.0',
        'tensorrt_cu12_bindings-10.3.0-cp311-none-manylinux_2_17_x86_64.whl',
        '59ace22d7f2ca1e9dcde2cb0cb5916912cb3cd5a9d72dd7852be0160d9b3a0ee',
    ),
    '11.4.0.106': (
        'tensorrt-cu12-bindings==11.4.0.106',
        'tensorrt_cu12_bindings-11.4.0.106-cp311-none-manylinux_2_28_x86_64.whl',
        'e2ab48f316bbff6a7a44a30e94a9ceb0d2cf6645ff39feadecfa68d7cb7a94bf',
    ),
}


class FetchError(RuntimeError):
    """The bindings wheel could not be downloaded (no network, no pip) or did not verify."""


def fetch_wheel(version: str, cache_dir: Path) -> Path:
    """The bindings wheel of `version`, downloaded once into `cache_dir` and sha256-checked."""
    requirement, name, sha256 = WHEELS[version]
    path = Path(cache_dir) / name
    if not path.is_file():
        pip = [sys.executable, '-m', 'pip'] if _has_pip() else [shutil.which('pip3') or 'pip']
        command = pip + ['download', '--no-deps', '--only-binary=:all:', '--python-version']
        command += ['3.11', '--platform', 'manylinux_2_28_x86_64', '--platform']
        command += ['manylinux_2_17_x86_64', '-d', str(cache_dir), requirement]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FetchError(f'cannot run pip to download {requirement}: {exc}') from exc
        if done.returncode != 0 or not path.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ['no output']
            raise FetchError(f'pip could not download {requirement}: {tail[0]}')
    if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        path.unlink()
        raise FetchError(f'{name} does not match its pinned sha256')
    return path


def _has_pip() -> bool:
    import importlib.util

    return importlib.util.find_spec('pip') is not None


@dataclass
class Bindings:
    """The Python names one TensorRT version binds."""

    version: str
    blob: bytes  # the compiled module's bytes
    python_names: set[str] = field(default_factory=set)  # defined by its __init__.py

    def has(self, name: str) -> bool:
        return name in self.python_names or (name.encode() + b'\0') in self.blob


def read_bindings(wheel: Path, version: str) -> Bindings:
    with zipfile.ZipFile(wheel) as z:
        blob = z.read('tensorrt_bindings/tensorrt.so')
        tree = ast.parse(z.read('tensorrt_bindings/__init__.py'))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return Bindings(version, blob, names)


def bindings(version: str, cache_dir: Path) -> Bindings:
    return read_bindings(fetch_wheel(version, cache_dir), version)


# --- the backend's names (parsed, not listed) -------------------------------------------------

TRT_ROOTS = {'trt', 'self._trt', 'self._engine', 'self._context'}
FLAG = re.compile(r'^[A-Z][A-Z0-9_]+$')  # enum members named by strings ('FP16', ...)


@dataclass
class BackendNames:
    used: set[str]  # attributes and keyword arguments of TensorRT objects, enum members by string
    probed: set[str]  # names tested with hasattr(): the version branches


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f'{_dotted(node.value)}.{node.attr}'
    return ''


def backend_names(path: Path = BACKEND) -> BackendNames:
    """Attributes the backend reads from TensorRT objects: from `trt`/`self._trt`/engine/context
    and any variable assigned from them (a name tainted in one function taints a parameter of
    the same name elsewhere), plus the UPPER_CASE strings it turns into enum members."""
    tree = ast.parse(Path(path).read_text())
    tainted = set(TRT_ROOTS)

    def is_trt(node: ast.AST) -> bool:
        """An expression whose chain (a.b(c).d) starts at a TensorRT object."""
        if isinstance(node, (ast.Name, ast.Attribute)) and _dotted(node) in tainted:
            return True
        if isinstance(node, ast.Attribute):
            return is_trt(node.value)
        if isinstance(node, ast.Call):
            return is_trt(node.func)
        if isinstance(node, ast.Subscript):
            return is_trt(node.value)
        return False

    for _ in range(4):  # to a fixpoint (a parameter named like a tainted variable is tainted)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    pairs = [(target, node.value)]
                    if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        pairs = list(zip(target.elts, node.value.elts))
                    tainted |= {_dotted(t) for t, v in pairs if is_trt(v) and _dotted(t)}
    flags = {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and FLAG.match(n.value)
    }
    used = set(flags)
    probed = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_trt(node.value):
            used.add(node.attr)
        elif isinstance(node, ast.Call) and node.keywords and is_trt(node.func):
            used |= {k.arg for k in node.keywords if k.arg}  # pybind11 binds keyword names
        if isinstance(node, ast.Call) and _dotted(node.func) == 'hasattr':
            name = node.args[1]
            # hasattr(trt.BuilderFlag, f) over a tuple of flag strings probes those flags
            probed |= {name.value} if isinstance(name, ast.Constant) else flags
    return BackendNames(used, probed)


# --- fakes restricted to the real names -------------------------------------------------------

PLAIN = (int, float, str, bytes, bool, tuple, list, dict, type(None))


class Restricted:
    """A view of a fake object offering only the names `bindings` has. Records what was used
    (`seen`) and what was probed but is absent (`absent`)."""

    def __init__(self, target: Any, names: Bindings, seen: set, absent: set):
        object.__setattr__(self, '_t', (target, names, seen, absent))

    def _wrap(self, value: Any) -> Any:
        _, names, seen, absent = object.__getattribute__(self, '_t')
        return value if isinstance(value, PLAIN) else Restricted(value, names, seen, absent)

    def __getattr__(self, name: str) -> Any:
        target, names, seen, absent = object.__getattribute__(self, '_t')
        if not names.has(name):
            absent.add(name)
            raise AttributeError(f'TensorRT {names.version} has no {name!r}')
        value = getattr(target, name)  # AttributeError when the fake lacks a real name
        seen.add(name)
        return self._wrap(value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        target = object.__getattribute__(self, '_t')[0]
        args = [unwrap(a) for a in args]
        return self._wrap(target(*args, **{k: unwrap(v) for k, v in kwargs.items()}))

    def __int__(self) -> int:
        return int(object.__getattribute__(self, '_t')[0])


def unwrap(value: Any) -> Any:
    return object.__getattribute__(value, '_t')[0] if isinstance(value, Restricted) else value


def restricted(fake: Any, names: Bindings) -> tuple[Restricted, set, set]:
    """(the restricted fake module, names it served, names probed but absent)."""
    seen: set = set()
    absent: set = set()
    return Restricted(fake, names, seen, absent), seen, absent


# --- ONNX operators against onnx-tensorrt's support matrix ------------------------------------


def support_matrix() -> dict:
    return yaml.safe_load(OPS_FILE.read_text())


def op_problems(model_path: Path, version: str, matrix: dict | None = None) -> list[str]:
    """Why TensorRT `version`'s ONNX parser would refuse the model (empty: nothing found)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    matrix = matrix or support_matrix()
    release = matrix['versions'][version]
    model = onnx.load(str(model_path))
    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), 0)
    if not release['min_opset'] <= opset <= release['max_opset']:
        problems.append(
            f'opset {opset} outside {release["min_opset"]}..{release["max_opset"]} of {version}'
        )
    supported = set(release['operators'])
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.domain not in ('', 'ai.onnx'):
            problems.append(f'{node.name or node.op_type}: custom domain {node.domain!r}')
        elif node.op_type in matrix['unsupported']:
            problems.append(f'{node.name}: {node.op_type} is N in the support matrix')
        elif node.op_type not in supported:
            problems.append(f'{node.name}: {node.op_type} is not in the matrix excerpt')
        for index in release['initializer_inputs'].get(node.op_type, []):
            if len(node.input) > index and node.input[index] not in consts:
                problems.append(f'{node.name}: {node.op_type} input {index} must be constant')
        if node.op_type in ('QuantizeLinear', 'DequantizeLinear'):
            problems += _qdq_problems(node, consts, np)
    return sorted(set(problems))


def _qdq_problems(node: Any, consts: dict, np: Any) -> list[str]:
    """TensorRT's explicit quantization: zero point 0 (and int8, as ONNX makes a Q without zero
    point uint8), per-channel scales only along axis 0 of a constant (the weights)."""
    name, out = node.name or node.op_type, []
    axis = next((a.i for a in node.attribute if a.name == 'axis'), 1)
    scale = consts.get(node.input[1])
    zero = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zero is not None and (zero.dtype != np.int8 or np.any(zero != 0)):
        out.append(f'{name}: zero point must be int8 zeros, not {zero.dtype} {zero.ravel()[:3]}')
    if node.op_type == 'QuantizeLinear' and zero is None:
        out.append(f'{name}: no zero point, so ONNX makes its output uint8 (TensorRT: int8)')
    if node.op_type == 'DequantizeLinear':
        x = consts.get(node.input[0])
        if x is not None and x.dtype != np.int8:
            out.append(f'{name}: quantized weights are {x.dtype}, not int8')
    if scale is None:
        out.append(f'{name}: scale is not an initializer')
    elif scale.size > 1 and (axis != 0 or node.input[0] not in consts):
        out.append(f'{name}: per-channel scales on axis {axis} of a non-constant input')
    return out
