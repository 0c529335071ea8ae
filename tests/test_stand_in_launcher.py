"""The project's stand-in launcher: what it implements it does as `ros2 launch` does (typed
strings, params files keyed for any namespace), everything else is refused in one line. The
same files under the real launch system: tests/test_device_path.py. Also the boot-time unit."""

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from skin_screening.launching import LaunchError, NodeSpec, package_share, parse_launch

LAUNCH = package_share() / 'launch'
UNIT = LAUNCH / 'systemd' / 'skin-screening.service'


def launch_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / 'x.launch.xml'
    path.write_text(f'<launch><arg name="a" default="1"/>{body}</launch>')
    return path


NODE = '<node pkg="skin_screening" exec="inference_node" name="inference"{}>{}</node>'


@pytest.mark.parametrize(
    'body, named',
    [
        (NODE.format(' namespace="left"', ''), 'namespace'),
        (NODE.format(' if="$(var a)"', ''), "'if'"),
        (NODE.format(' on_exit="shutdown"', ''), 'on_exit'),
        (NODE.format(' output="screen"', ''), 'output'),
        (NODE.format('', '<env name="X" value="1"/>'), '<env>'),
        (NODE.format('', '<param name="p" value="[1]" type="yaml"/>'), "type 'yaml'"),
        (NODE.format('', '<param name="p" value="$(env HOME)"/>'), '$(env HOME)'),
        ('<group><node pkg="skin_screening" exec="camera_node"/></group>', '<group>'),
        ('<include file="other.launch.xml"/>', '<include>'),
        ('<arg name="b" default="1" choices="1|2"/>', 'choices'),
    ],
)
def test_what_it_does_not_implement_is_refused_in_one_line(tmp_path, body, named):
    with pytest.raises(LaunchError) as error:
        parse_launch(launch_file(tmp_path, body))
    assert named in str(error.value) and '\n' not in str(error.value)


def test_string_arguments_stay_strings_and_reach_the_node_quoted(tmp_path):
    nodes = {
        s.name: s
        for s in parse_launch(
            LAUNCH / 'replay.launch.xml', {'bag': str(tmp_path), 'run_name': '123', 'rate': '2'}
        )
    }
    assert nodes['recorder'].params['run_name'] == '123'  # type="str": not the integer 123
    assert "run_name:='123'" in nodes['recorder'].argv()  # rcl reads '123' as a string
    assert nodes['bag_player'].params['topic'] == ''
    assert "topic:=''" in nodes['bag_player'].argv()  # rcl refuses a bare `topic:=`
    assert nodes['bag_player'].params['rate'] == 2.0  # type="float": 2 -> 2.0
    with pytest.raises(LaunchError, match="bag_player.rate: 'fast' is not a float"):
        parse_launch(LAUNCH / 'replay.launch.xml', {'bag': str(tmp_path), 'rate': 'fast'})


def test_params_files_apply_under_any_namespace(tmp_path):
    params = tmp_path / 'p.yaml'
    params.write_text(
        '/**:\n  ros__parameters: {a: 1, b: 1}\n'
        '/**/inference:\n  ros__parameters: {b: 2, c: 2}\n'
        'camera:\n  ros__parameters: {c: 9}\n'
    )
    spec = NodeSpec('skin_screening', 'inference_node', 'inference', param_files=[params])
    assert spec.file_params() == {'a': 1, 'b': 2, 'c': 2}
    for path in (LAUNCH / 'params').glob('*.yaml'):
        assert re.match(r'(#.*\n)*/\*\*(/\w+)?:', path.read_text()), path.name  # /** or /**/name


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNIT)
    return parser


def test_the_boot_unit_stops_like_ctrl_c_and_restarts_on_failure():
    service = unit()['Service']
    assert service['KillSignal'] == 'SIGINT' and service['KillMode'] == 'mixed'
    assert int(service['TimeoutStopSec']) >= 20 and service['Restart'] == 'on-failure'
    assert unit()['Install']['WantedBy'] == 'multi-user.target'


def test_the_boot_unit_starts_the_shipped_launch_file_with_declared_arguments(tmp_path):
    command = shlex.split(unit()['Service']['ExecStart'])
    script = command[command.index('-c') + 1]
    launch = shlex.split(script.split('exec ', 1)[1])
    assert launch[:3] == ['ros2', 'launch', 'skin_screening']
    assert (LAUNCH / launch[3]).is_file()
    settings = dict(
        line.split('=', 1)
        for line in (UNIT.parent / 'skin-screening.env').read_text().splitlines()
        if line and not line.startswith('#')
    )
    used = set(re.findall(r'\$(\w+)', script))
    assert used <= set(settings), used - set(settings)
    args = dict(arg.split(':=', 1) for arg in launch[4:])
    # every argument is one the launch file declares, and the data folder is the recorder's
    args = {k: v.replace('$DATA_DIR', str(tmp_path)).replace('$', '') for k, v in args.items()}
    (recorder,) = [s for s in parse_launch(LAUNCH / launch[3], args) if s.name == 'recorder']
    assert recorder.params['output_dir'] == str(tmp_path)


@pytest.mark.skipif(shutil.which('systemd-analyze') is None, reason='systemd-analyze not here')
def test_systemd_accepts_the_unit():
    done = subprocess.run(
        ['systemd-analyze', 'verify', str(UNIT)], capture_output=True, text=True, timeout=60
    )
    complaints = [line for line in done.stderr.splitlines() if UNIT.name in line]
    assert done.returncode == 0 and not complaints, done.stderr
