"""Make the project's ROS 2 message package importable in the current Python environment.

Two ways an environment gets ROS 2:

* PyPI wheels (x86_64 Linux, what `uv sync` installs here): the ROS prefix lives inside the
  virtual environment. This module builds ``ros_ws/src/skin_screening_msgs`` with CMake straight
  into that prefix, after fixing the include paths the wheels baked in at their own build time.
* A system ROS 2 (a Jetson with apt-installed Humble/Jazzy): build the workspace with colcon and
  ``source install/setup.bash``; this module then only checks that the messages import.

``ensure_messages()`` is idempotent and costs one import when the build is current (a stamp keyed
by the message sources and the Python version). ``python -m skin_screening.bootstrap`` runs it.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

MSG_PACKAGE = 'skin_screening_msgs'
# Include paths baked into the wheels' CMake exports: the wheel builder's (/opt/python/...), or
# another environment's where an earlier fix reached this file through a link into a cache.
_BAKED_PY_INCLUDE = re.compile(r'/[^;"\s]*/include/python\d+\.\d+t?(?=[;"\s])')
_BAKED_NUMPY_INCLUDE = re.compile(r'/[^;"\s]*/site-packages/numpy/(?:_core|core)/include')


class BootstrapError(RuntimeError):
    """The environment cannot build the message package; the message says what to install."""


def source_checkout() -> Path | None:
    """The repository root (the folder holding ros_ws/) when this package runs from its source
    tree (uv environment, colcon --symlink-install); None when colcon installed a copy."""
    root = Path(__file__).resolve().parents[4]
    return root if (root / 'ros_ws' / 'src' / MSG_PACKAGE / 'msg').is_dir() else None


# Each package's shared files in a checkout (installed: share/<package>, same layout inside).
_CHECKOUT_SHARE = {'skin_screening': '.', MSG_PACKAGE: f'ros_ws/src/{MSG_PACKAGE}'}


def share_dir(package: str) -> Path:
    """A package's shared files (skin_screening: launch/, data/models/; the messages: msg/):
    in the source checkout when running from one, else share/<package> of its colcon install,
    found through the ament index (AMENT_PREFIX_PATH, set by `source install/setup.bash`)."""
    root = source_checkout()
    if root is not None:
        return root / _CHECKOUT_SHARE[package]
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(package))
    except (ImportError, LookupError, OSError, ValueError) as exc:
        raise BootstrapError(
            f'{package} is installed without its share folder ({exc}): '
            'source the install (source install/setup.bash) or run from the source checkout'
        ) from exc


def scratch_dir(name: str) -> Path:
    """ros_ws/build/<name> of the checkout (git-ignored), made with a COLCON_IGNORE beside it:
    `colcon build` in ros_ws must not take the environments built there for packages."""
    build = share_dir('skin_screening') / 'ros_ws' / 'build'
    (build / name).mkdir(parents=True, exist_ok=True)
    (build / 'COLCON_IGNORE').touch()
    return build / name


def msg_source_dir() -> Path:
    return share_dir(MSG_PACKAGE)


def _sources_digest(src: Path) -> str:
    digest = hashlib.sha256(sys.version.encode())
    for path in sorted(src.rglob('*')):
        if path.is_file():
            digest.update(path.relative_to(src).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _stamp_path(prefix: Path) -> Path:
    return prefix / 'share' / MSG_PACKAGE / '.skin_screening_build_stamp'


def wheel_ros_prefix() -> Path | None:
    """The ROS prefix installed by the PyPI wheels into this environment, or None."""
    prefix = Path(sys.prefix)
    if (prefix / 'share' / 'rosidl_default_generators').is_dir():
        return prefix
    return None


def fix_baked_include_paths(prefix: Path) -> int:
    """Point the wheels' baked-in include paths at this interpreter; returns files changed."""
    py_include = sysconfig.get_paths()['include']
    import numpy

    np_include = numpy.get_include()
    changed = 0
    for name in glob.glob(
        str(prefix / 'share' / '*' / 'cmake' / '*rosidl_generator_py*Export*.cmake')
    ):
        path = Path(name)
        text = path.read_text()
        new = _BAKED_PY_INCLUDE.sub(py_include, _BAKED_NUMPY_INCLUDE.sub(np_include, text))
        if new != text:
            # A new file, never a write into this one: uv links an environment's files to its
            # cache, and an edit in place would reach every environment made from it.
            fresh = path.with_name(path.name + '.fixed')
            fresh.write_text(new)
            os.replace(fresh, path)
            changed += 1
    return changed


def check_toolchain() -> None:
    """Raise one BootstrapError naming everything missing to build the message package."""
    missing = []
    if shutil.which('cmake') is None:
        missing.append('cmake')
    if not (shutil.which('cc') or shutil.which('gcc') or shutil.which('clang')):
        missing.append('a C compiler')
    if not (shutil.which('c++') or shutil.which('g++') or shutil.which('clang++')):
        missing.append('a C++ compiler')
    if not Path(sysconfig.get_paths()['include'], 'Python.h').is_file():
        missing.append(f'the Python {sys.version_info.major}.{sys.version_info.minor} headers')
    if missing:
        raise BootstrapError(
            f'Cannot build the ROS 2 message package {MSG_PACKAGE}: missing '
            + ', '.join(missing)
            + '. On Debian/Ubuntu: sudo apt-get install cmake g++ python3-dev '
            '(then run the command again).'
        )


def _run(cmd: list[str], log: Path) -> None:
    with log.open('a') as out:
        out.write('$ ' + ' '.join(cmd) + '\n')
        out.flush()
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = ''.join(log.read_text().splitlines(keepends=True)[-25:])
        raise BootstrapError(f'Building {MSG_PACKAGE} failed ({cmd[0]}); log: {log}\n{tail}')


def build_messages(prefix: Path, verbose: bool = False) -> None:
    """Configure, build and install the message package into ``prefix`` with plain CMake."""
    check_toolchain()
    fix_baked_include_paths(prefix)
    src = msg_source_dir()
    build = scratch_dir(f'{MSG_PACKAGE}-{sys.implementation.cache_tag}')
    log = build / 'bootstrap.log'
    log.write_text('')
    if verbose:
        print(f'building {MSG_PACKAGE} into {prefix} (log: {log})', file=sys.stderr)
    env_prefix = str(prefix)
    _run(
        [
            'cmake',
            '-S',
            str(src),
            '-B',
            str(build),
            f'-DCMAKE_INSTALL_PREFIX={env_prefix}',
            f'-DCMAKE_PREFIX_PATH={env_prefix}',
            f'-DPython3_EXECUTABLE={sys.executable}',
            '-DBUILD_TESTING=OFF',
            '-DCMAKE_BUILD_TYPE=Release',
        ],
        log,
    )
    _run(['cmake', '--build', str(build), '-j', str(max(1, os.cpu_count() or 1))], log)
    _run(['cmake', '--install', str(build)], log)
    _stamp_path(prefix).write_text(_sources_digest(src))
    importlib.invalidate_caches()


def ensure_messages(verbose: bool = False) -> None:
    """Make ``skin_screening_msgs`` importable, building it when the wheels' prefix needs it."""
    # Only a source checkout builds the messages; an installed copy comes with them (colcon).
    prefix = wheel_ros_prefix() if source_checkout() is not None else None
    if prefix is not None:
        stamp = _stamp_path(prefix)
        current = stamp.is_file() and stamp.read_text() == _sources_digest(msg_source_dir())
        if not current:
            build_messages(prefix, verbose=verbose)
    try:
        importlib.import_module(f'{MSG_PACKAGE}.msg')
    except ImportError as exc:
        if prefix is None:
            raise BootstrapError(
                f'{MSG_PACKAGE} is not importable and this environment has no ROS 2 wheels. '
                'With a system ROS 2: cd ros_ws && colcon build && source install/setup.bash; '
                'on x86_64 Linux: uv sync (installs the ROS 2 wheels).'
            ) from exc
        raise BootstrapError(f'{MSG_PACKAGE} was built but does not import: {exc}') from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--force', action='store_true', help='rebuild even when current')
    args = parser.parse_args(argv)
    try:
        prefix = wheel_ros_prefix()
        if args.force and prefix is not None:
            build_messages(prefix, verbose=True)
        ensure_messages(verbose=True)
    except BootstrapError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(f'{MSG_PACKAGE} ready')
    return 0


if __name__ == '__main__':
    sys.exit(main())
