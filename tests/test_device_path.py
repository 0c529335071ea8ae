"""The device path for real: `colcon build` of ros_ws, then `ros2 launch` (the real launch system
from ../shared/ros2, Kilted-era rolling and Humble) of the installed package's launch files.

Each launch is compared with the project's stand-in launcher on the same file: the parameters
every node reports through its parameter services must be the ones the stand-in would give it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from skin_screening.core.bags import LabelledFrame, write_bag
from skin_screening.core.model_card import DEFAULT_MODEL
from skin_screening.core.recording import read_rows
from skin_screening.launching import parse_launch

from tests.device_env import REPO, Unavailable, activated, device_env
from tests.nodes_helpers import owner_only_modes, probe_node, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]
LAUNCH = REPO / 'launch'


def _env(flavour: str) -> Path:
    try:
        return device_env(flavour)
    except Unavailable as exc:
        pytest.skip(str(exc))


def checkout_copy(dest: Path) -> Path:
    """The tracked and untracked-but-not-ignored files of this checkout, as a clean clone has."""
    files = (
        subprocess.run(
            ['git', 'ls-files', '-co', '--exclude-standard', '-z'],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split('\0')
    )
    for name in filter(None, files):
        source, target = REPO / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)
    return dest


def tree(root: Path, skip: tuple[str, ...] = ()) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob('*')
        if not any(str(p.relative_to(root)).startswith(s) for s in skip)
    }


def colcon(
    venv: Path, cwd: Path, *args: str, underlay: Path | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    """`colcon [global args] build [args]`: everything before 'build' in `args` is global;
    `underlay`: an install folder sourced first."""
    args = args if 'build' in args else ('build', *args)
    start = time.monotonic()
    done = subprocess.run(
        [str(venv / 'bin' / 'colcon'), *args],
        cwd=cwd,
        env=activated(venv, dict(os.environ), *([underlay] if underlay else [])),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done, time.monotonic() - start


def check_install(install: Path) -> None:
    share = install / 'skin_screening' / 'share' / 'skin_screening'
    for name in (
        'launch/wearable.launch.xml',
        'launch/replay.launch.xml',
        'launch/fastdds.xml',
        'launch/params/inference.yaml',
        f'{DEFAULT_MODEL}/model_card.json',
        f'{DEFAULT_MODEL}/model.int8-u8.onnx',
        'data/models/mobilenetv2-a0.5/model_card.json',  # the zoo comes along
    ):
        assert (share / name).is_file(), name
    nodes = install / 'skin_screening' / 'lib' / 'skin_screening'
    assert {p.name for p in nodes.iterdir()} >= {'inference_node', 'bag_player_node'}
    dangling = [p for p in install.rglob('*') if p.is_symlink() and not p.exists()]
    assert not dangling, dangling[:3]


@pytest.fixture(scope='session')
def installed(tmp_path_factory) -> Path:
    """A clean copy of the checkout, built as the README says: cd ros_ws && colcon build."""
    venv = _env('rolling')
    copy = checkout_copy(tmp_path_factory.mktemp('clone'))
    before = tree(copy)
    done, seconds = colcon(venv, copy / 'ros_ws')
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f'colcon build: {seconds:.1f} s')
    assert tree(copy, ('ros_ws/build', 'ros_ws/install', 'ros_ws/log')) == before
    check_install(copy / 'ros_ws' / 'install')
    return copy / 'ros_ws' / 'install'


def test_colcon_build_installs_a_working_package(installed):
    check_install(installed)


def test_symlink_install_from_other_bases_writes_nothing_outside_them(installed, tmp_path):
    """The nodes' package (the one with symlinked data and launch files) over the message
    package of `installed` as its underlay: that CMake build is the `installed` one's (30 s)."""
    venv = _env('rolling')
    copy = checkout_copy(tmp_path / 'clone')
    before = tree(copy)
    bases = ['--build-base', str(tmp_path / 'b'), '--install-base', str(tmp_path / 'i')]
    done, seconds = colcon(
        venv,
        copy / 'ros_ws',
        '--log-base',
        str(tmp_path / 'log'),
        'build',
        '--symlink-install',
        '--packages-select',
        'skin_screening',
        *bases,
        underlay=installed,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f'colcon build --symlink-install: {seconds:.1f} s')
    assert tree(copy) == before  # nothing written into the source tree, nothing beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ['b', 'clone', 'i', 'log']
    check_install(tmp_path / 'i')
    launch = tmp_path / 'i/skin_screening/share/skin_screening/launch/wearable.launch.xml'
    assert launch.resolve() == (copy / 'launch' / 'wearable.launch.xml').resolve()


def ros2_launch(flavour, installed, env, log, launch_file, **args):
    venv = _env(flavour)
    env = env | {'ROS_LOG_DIR': str(log.parent / 'roslog')}
    argv = [str(venv / 'bin' / 'ros2'), 'launch', 'skin_screening', launch_file]
    argv += [f'{k}:={v}' for k, v in args.items()]
    return subprocess.Popen(
        argv,
        env=activated(venv, env, installed),
        stdout=open(log, 'w'),
        stderr=subprocess.STDOUT,
        cwd=log.parent,
    )


def reported_params(node, name: str, keys) -> dict:
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    client = node.create_client(GetParameters, f'/{name}/get_parameters')
    assert client.wait_for_service(timeout_sec=60), f'/{name} has no parameter service'
    future = client.call_async(GetParameters.Request(names=list(keys)))
    wait_for(future.done, 30, f'parameters of /{name}')
    return dict(zip(keys, map(parameter_value_to_python, future.result().values)))


def stopped(proc: subprocess.Popen, sig: int, timeout: float = 40) -> tuple[int, list]:
    """Send `sig` to the launch; its exit code and the processes it left running (each with
    what its threads were waiting on, for the failure message)."""
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = None
    # a clean shutdown tears DDS down: seconds on a loaded 2-core machine, never this long
    _, alive = psutil.wait_procs(children, timeout=30)
    left = [(p.pid, p.name(), waiting_on(p.pid)) for p in alive]
    for leftover in alive:
        leftover.kill()
    if code is None:
        proc.kill()
    return code, left


def waiting_on(pid: int) -> list[str]:
    """Each thread's state and kernel wait channel (/proc), to tell a hang from a slow exit."""
    found = []
    for task in Path(f'/proc/{pid}/task').glob('*'):
        try:
            state = (task / 'stat').read_text().rsplit(')', 1)[1].split()[0]
            found.append(f'{task.name}:{state}:{(task / "wchan").read_text()}')
        except OSError:
            continue
    return found


@pytest.fixture
def camera_folder(tmp_path, sample_frames) -> Path:
    import cv2

    folder = tmp_path / 'camera'
    folder.mkdir()
    for i, rgb in enumerate(sample_frames[0][:4]):
        cv2.imwrite(str(folder / f'{i}.png'), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder


@pytest.mark.parametrize('flavour', ['rolling', 'humble'])
@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_wearable_launch_matches_the_stand_in_and_stops_cleanly(
    flavour, sig, installed, camera_folder, ros_env, tmp_path
):
    from diagnostic_msgs.msg import DiagnosticArray
    from skin_screening_msgs.msg import Diagnosis

    args = {
        'camera': str(camera_folder),
        'output_dir': str(tmp_path / 'runs'),
        'precision': 'fp16',
        'backend': 'onnxruntime',
    }
    log = tmp_path / 'launch.log'
    got, recorded = [], []

    def on_status(msg) -> None:  # the recorder's row count, from its /diagnostics
        recorded.extend(
            int(v.value)
            for s in msg.status
            if 'recorder' in s.name
            for v in s.values
            if v.key == 'diagnoses_rows'
        )

    with probe_node() as node:
        node.create_subscription(Diagnosis, 'diagnosis', got.append, 10)
        node.create_subscription(DiagnosticArray, '/diagnostics', on_status, 10)
        proc = ros2_launch(flavour, installed, ros_env, log, 'wearable.launch.xml', **args)
        try:
            wait_for(lambda: got or proc.poll() is not None, 120, 'a Diagnosis')
            assert got, log.read_text()[-3000:]
            # stopped only once the recorder holds a row (it may match after this probe did)
            wait_for(lambda: any(recorded) or proc.poll() is not None, 60, 'a recorded row')
            assert got[-1].precision == 'fp16'
            for spec in parse_launch(LAUNCH / 'wearable.launch.xml', args):
                expected = spec.all_params()
                expected.pop('model_dir', None)  # the install's share/ there, the checkout here
                assert reported_params(node, spec.name, expected) == expected, spec.name
        finally:
            code, alive = stopped(proc, sig)
    # what launch printed, and the nodes' own rcl log files (they outlive a killed launch)
    output = log.read_text() + ''.join(p.read_text() for p in (tmp_path / 'roslog').rglob('*.log'))
    print(f'{flavour} {sig.name}: exit code {code}, {len(alive)} left running')
    assert not alive, alive
    # launch ends with 0 on SIGINT; on SIGTERM launch 3.x/1.x die by it (-15): the nodes, told
    # by the kernel (PR_SET_PDEATHSIG), still shut down cleanly
    assert code == (0 if sig == signal.SIGINT else -signal.SIGTERM), output[-3000:]
    for bad in ('Traceback', 'RCLError', 'Failed to publish', 'KeyboardInterrupt'):
        assert bad not in output, output[-3000:]
    # one session folder for the recorder and the findings node of this launch, owner-only
    (run,) = list((tmp_path / 'runs').iterdir())
    assert (run / 'findings').is_dir() and (run / 'session.json').is_file()
    assert owner_only_modes(run) == {}
    rows = read_rows(run / 'diagnoses.csv')
    # the recorder closed its file: every row complete, the last one included
    assert rows and all(r['stamp_ns'].isdigit() and r['precision'] == 'fp16' for r in rows)


@pytest.mark.parametrize('flavour', ['rolling', 'humble'])
def test_replay_launch_ends_with_the_bag_and_keeps_string_arguments(
    flavour, installed, sample_frames, ros_env, tmp_path
):
    bag = tmp_path / 'bag'
    frames, y = sample_frames
    write_bag(
        bag,
        [
            LabelledFrame(f, int(t), 'x', f'i{i}', f'l{i}')
            for i, (f, t) in enumerate(zip(frames[:6], y[:6]))
        ],
    )
    log = tmp_path / 'launch.log'
    proc = ros2_launch(
        flavour,
        installed,
        ros_env,
        log,
        'replay.launch.xml',
        bag=bag,
        output_dir=tmp_path / 'runs',
        precision='int8',
        run_name='2024-01-01',
    )
    try:
        code = proc.wait(timeout=180)  # the bag player announces the end: every node ends
    finally:
        if proc.poll() is None:
            stopped(proc, signal.SIGINT)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert 'Traceback' not in output, output[-3000:]
    (run,) = list((tmp_path / 'runs').iterdir())
    assert run.name.endswith('2024-01-01')  # a date-like string stayed a string
    assert (run / 'findings').is_dir()  # the findings node's evidence in the same session
    rows = read_rows(run / 'diagnoses.csv')
    assert len(rows) == 6 and {r['precision'] for r in rows} == {'int8'}


def test_run_py_uses_its_checkout_after_the_install_is_sourced(installed):
    sourced = activated(
        Path(os.environ.get('VIRTUAL_ENV', '/nonexistent')), dict(os.environ), installed
    )
    probe = (
        'import run, skin_screening.launching as l; print(l.__file__); print(l.package_share())'
    )
    done = subprocess.run(
        [sys.executable, '-c', probe],
        cwd=REPO,
        env=sourced,
        capture_output=True,
        text=True,
        timeout=60,
    )
    module, share = done.stdout.split()
    assert Path(module).is_relative_to(REPO / 'ros_ws' / 'src'), done.stderr
    assert Path(share) == REPO
    assert str(installed) in sourced['PYTHONPATH']  # the installed copy was first in line


NODE = '<node pkg="skin_screening" exec="inference_node" name="inference"{}>{}</node>'
CONSTRUCTS = {
    'typed param': NODE.format('', '<param name="p" value="$(var a)" type="str"/>'),
    'on_exit': NODE.format(' on_exit="shutdown"', ''),
    'namespace': NODE.format(' namespace="left"', ''),
    'if': NODE.format(' if="true"', ''),
    'env': NODE.format('', '<env name="X" value="1"/>'),
    'group': f'<group>{NODE.format("", "")}</group>',
}
LOAD = """
import json, sys
import launch
from launch.launch_description_sources import AnyLaunchDescriptionSource
out = {}
for name, path in json.loads(sys.argv[1]).items():
    try:
        AnyLaunchDescriptionSource(path).get_launch_description(launch.LaunchContext())
        out[name] = 'accepted'
    except Exception as exc:
        out[name] = 'refused: ' + ' | '.join(str(exc).splitlines())
print(json.dumps(out))
"""


def test_each_launch_construct_under_the_stand_in_and_both_launch_versions(installed, tmp_path):
    """The table in the README, measured: which constructs each launcher takes."""
    import json

    from skin_screening.launching import LaunchError

    files = {}
    for name, body in CONSTRUCTS.items():
        files[name] = tmp_path / f'{name.replace(" ", "_")}.launch.xml'
        files[name].write_text(f'<launch><arg name="a" default="x"/>{body}</launch>')
    table = {'stand-in': {}}
    for name, path in files.items():
        try:
            parse_launch(path)
            table['stand-in'][name] = 'accepted'
        except LaunchError as exc:
            table['stand-in'][name] = f'refused: {exc}'
    for flavour in ('rolling', 'humble'):
        venv = _env(flavour)
        done = subprocess.run(
            [
                str(venv / 'bin' / 'python'),
                '-c',
                LOAD,
                json.dumps({k: str(v) for k, v in files.items()}),
            ],
            env=activated(venv, dict(os.environ), installed),
            capture_output=True,
            text=True,
            timeout=120,
        )
        table[flavour] = json.loads(done.stdout)
    for launcher, row in table.items():
        print(launcher, {k: v[:70] for k, v in row.items()})
    verdicts = {k: {n: v.split(':')[0] for n, v in row.items()} for k, row in table.items()}
    assert verdicts['stand-in'] == {
        n: 'accepted' if n == 'typed param' else 'refused' for n in CONSTRUCTS
    }
    assert verdicts['rolling'] == dict.fromkeys(CONSTRUCTS, 'accepted')
    assert verdicts['humble'] == {
        n: 'refused' if n == 'on_exit' else 'accepted' for n in CONSTRUCTS
    }
    assert 'on_exit' in table['humble']['on_exit']
