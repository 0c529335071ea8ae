"""An environment with the device's ROS tools, for the device-path tests: colcon, the real
launch system (`ros2 launch`, `ros2 param`) from ../shared/ros2, the ROS 2 wheels and the
nodes' runtime libraries at the versions of uv.lock.

PyPI has no `launch`/`ros2cli`; ../shared/ros2 holds them as wheels built from upstream, one set
for Kilted-era rolling and one for Humble (Jetson Orin boards), which cannot share an environment.
Each flavour gets its own under ros_ws/build/device-<flavour>/ (git-ignored), made once (about
20 s from uv's cache) and reused while uv.lock and the wheels are unchanged.

    uv run python -m tests.device_env rolling     # prints the environment's folder
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from skin_screening.bootstrap import scratch_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_ROS2 = REPO.parent / 'shared' / 'ros2'
FLAVOURS = ('rolling', 'humble')


class Unavailable(RuntimeError):
    """The device tools cannot be installed here; the message says why (tests skip with it)."""


def wheels(flavour: str) -> list[Path]:
    folder = SHARED_ROS2 / f'wheels-{flavour}'
    found = sorted(folder.glob('*.whl'))
    if not found:
        raise Unavailable(f'no launch wheels in {folder} (../shared/ros2 is absent)')
    return found


def _uv() -> str:
    uv = os.environ.get('UV') or shutil.which('uv')
    if not uv:
        raise Unavailable('uv is not on PATH')
    return uv


def _run(cmd: list[str], log: Path, **kwargs) -> None:
    with log.open('a') as out:
        out.write('$ ' + ' '.join(map(str, cmd)) + '\n')
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False, **kwargs)
    if done.returncode:
        tail = ''.join(log.read_text().splitlines(keepends=True)[-20:])
        raise RuntimeError(f'{cmd[0]} failed (log {log}):\n{tail}')


def _digest(flavour: str) -> str:
    digest = hashlib.sha256(sys.version.encode())
    digest.update((REPO / 'uv.lock').read_bytes())
    for wheel in wheels(flavour):
        digest.update(wheel.name.encode())
    return digest.hexdigest()


def device_env(flavour: str) -> Path:
    """The environment's folder (bin/ros2, bin/colcon), made or reused."""
    root = scratch_dir(f'device-{flavour}')
    venv, stamp, log = root / 'venv', root / 'stamp', root / 'setup.log'
    if stamp.is_file() and stamp.read_text() == _digest(flavour):
        return venv
    uv = _uv()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'PYTHONPATH')}
    _run([uv, 'venv', '--quiet', '--python', sys.executable, str(venv)], log, env=env)
    requirements = root / 'requirements.txt'
    export = [uv, 'export', '--frozen', '--no-hashes', '--no-emit-project', '--no-header']
    export += ['--no-group', 'training', '--no-group', 'dev', '--group', 'device']
    with requirements.open('w') as out:
        subprocess.run(export, cwd=REPO, stdout=out, check=True, env=env)
    python = str(venv / 'bin' / 'python')
    _run([uv, 'pip', 'install', '--python', python, '-r', str(requirements)], log, env=env)
    _run(
        [uv, 'pip', 'install', '--python', python, '--no-deps', *map(str, wheels(flavour))],
        log,
        env=env,
    )
    # launch_ros imports composition_interfaces (not on PyPI): built from ../shared/ros2/src.
    fix = 'from skin_screening.bootstrap import fix_baked_include_paths as f; import sys, pathlib;'
    fix += ' f(pathlib.Path(sys.prefix))'
    source = {'PYTHONPATH': str(REPO / 'ros_ws' / 'src' / 'skin_screening')}
    _run([python, '-c', fix], log, env=env | source)
    build = root / 'composition_interfaces'
    prefix = f'-DCMAKE_PREFIX_PATH={venv}'
    _run(
        [
            'cmake',
            '-S',
            str(SHARED_ROS2 / 'src' / 'composition_interfaces'),
            '-B',
            str(build),
            f'-DCMAKE_INSTALL_PREFIX={venv}',
            prefix,
            f'-DPython3_EXECUTABLE={python}',
            '-DBUILD_TESTING=OFF',
        ],
        log,
        env=env,
    )
    _run(['cmake', '--build', str(build), '-j', str(os.cpu_count() or 1)], log, env=env)
    _run(['cmake', '--install', str(build)], log, env=env)
    stamp.write_text(_digest(flavour))
    return venv


def activated(venv: Path, base: dict[str, str], *prefixes: Path) -> dict[str, str]:
    """`base` as after activating `venv` and sourcing each colcon install prefix in order
    (AMENT_PREFIX_PATH, PYTHONPATH, PATH), without a shell."""
    env = {k: v for k, v in base.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    env['VIRTUAL_ENV'] = str(venv)
    env['PATH'] = os.pathsep.join([str(venv / 'bin'), env.get('PATH', '')])
    ament, python_path = [str(venv)], []
    for prefix in prefixes:
        for package in sorted(p for p in prefix.iterdir() if (p / 'share').is_dir()):
            ament.insert(0, str(package))
            python_path += [str(p) for p in package.glob('lib/python3*/site-packages')]
    env['AMENT_PREFIX_PATH'] = os.pathsep.join(ament)
    env['CMAKE_PREFIX_PATH'] = os.pathsep.join(ament)
    if python_path:
        env['PYTHONPATH'] = os.pathsep.join(python_path)
    return env


if __name__ == '__main__':
    try:
        print(device_env(sys.argv[1] if len(sys.argv) > 1 else 'rolling'))
    except Unavailable as exc:
        sys.exit(f'unavailable: {exc}')
