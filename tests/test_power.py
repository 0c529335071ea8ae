"""Power sources on fixture sysfs trees and captured tegrastats lines."""

import math

import pytest
from skin_screening.core.power import PowerSourceUnavailable, detect_source
from skin_screening.core.power.ina3221 import Ina3221Source
from skin_screening.core.power.rapl import RaplSource
from skin_screening.core.power.tegrastats import TegrastatsSource, parse_line

from tests.power_tree import ina3221_tree, rapl_tree

ORIN = (
    'RAM 2448/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) CPU [2%@729,1%@729,0%@729,'
    '0%@729,off,off] EMC_FREQ 0% GR3D_FREQ 0% cpu@46.5C soc2@44.8C VDD_IN 5256mW/5256mW '
    'VDD_CPU_GPU_CV 772mW/772mW VDD_SOC 1473mW/1473mW'
)
NANO = (
    'RAM 1543/3964MB (lfb 127x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) '
    'CPU [8%@102,6%@102,2%@102,0%@102] EMC_FREQ 0%@1600 GR3D_FREQ 0%@76 APE 25 '
    'PLL@34C CPU@37C PMIC@100C GPU@35.5C AO@44C thermal@36C POM_5V_IN 3018/3018 '
    'POM_5V_GPU 0/0 POM_5V_CPU 480/480'
)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_orin_hwmon_rails(tmp_path):
    hw = tmp_path / 'bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3'
    for i, (name, mv, ma) in enumerate(
        [('VDD_IN', 5008, 1040), ('VDD_CPU_GPU_CV', 4992, 152), ('VDD_SOC', 4992, 296)], start=1
    ):
        _write(hw / f'in{i}_label', name + '\n')
        _write(hw / f'in{i}_input', f'{mv}\n')
        _write(hw / f'curr{i}_input', f'{ma}\n')
    _write(hw / 'in7_label', 'sum of shunt voltages')  # no current file: not a rail
    reading = detect_source(tmp_path).read()
    assert reading.source == 'ina3221' and [r.name for r in reading.rails] == [
        'VDD_IN',
        'VDD_CPU_GPU_CV',
        'VDD_SOC',
    ]
    assert reading.rails[0].volts == pytest.approx(5.008)
    assert reading.total_watts == pytest.approx(5.008 * 1.040)  # the input rail, not the sum


def test_legacy_ina3221x_iio_rails(tmp_path):
    iio = tmp_path / 'bus/i2c/drivers/ina3221x/6-0040/iio:device0'
    for i, (name, mv, ma) in enumerate([('POM_5V_IN', 5000, 600), ('POM_5V_GPU', 5000, 100)]):
        _write(iio / f'rail_name_{i}', name)
        _write(iio / f'in_voltage{i}_input', str(mv))
        _write(iio / f'in_current{i}_input', str(ma))
    reading = Ina3221Source(tmp_path).read()
    assert reading.total_watts == pytest.approx(3.0)


def test_tegrastats_formats():
    orin = {r.name: r.watts for r in parse_line(ORIN)}
    assert orin == {'VDD_IN': 5.256, 'VDD_CPU_GPU_CV': 0.772, 'VDD_SOC': 1.473}
    nano = {r.name: r.watts for r in parse_line(NANO)}
    assert nano == {'POM_5V_IN': 3.018, 'POM_5V_GPU': 0.0, 'POM_5V_CPU': 0.48}
    assert all(math.isnan(r.volts) for r in parse_line(ORIN))


def test_rapl_power_from_energy_counter_with_wraparound(tmp_path):
    zone = tmp_path / 'class/powercap/intel-rapl:0'
    _write(zone / 'name', 'package-0')
    _write(zone / 'max_energy_range_uj', '1000000')
    _write(zone / 'energy_uj', '900000')
    clock = iter([10.0, 10.5]).__next__
    source = RaplSource(tmp_path, clock=clock)
    assert source.read() is None  # needs two reads
    _write(zone / 'energy_uj', '100000')  # wrapped: 200000 uJ in 0.5 s
    assert source.read().total_watts == pytest.approx(0.4)


def test_no_source_says_so_with_each_reason(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))  # no tegrastats
    order = ('ina3221', 'tegrastats', 'rapl')  # NVML pinned out: a GPU host has it
    with pytest.raises(PowerSourceUnavailable, match='ina3221: .*tegrastats: .*rapl: '):
        detect_source(tmp_path, order)


def test_detection_prefers_the_board_sensor_and_honours_the_source(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))  # no tegrastats
    ina3221_tree(tmp_path, [('VDD_IN', 5000, 1000)])
    rapl_tree(tmp_path)
    assert detect_source(tmp_path, ('ina3221', 'tegrastats', 'rapl')).name == 'ina3221'
    assert detect_source(tmp_path, ('rapl',)).name == 'rapl'
    with pytest.raises(ValueError, match='unknown power source'):
        detect_source(tmp_path, ('battery',))


def test_tegrastats_runs_as_a_process(tmp_path):
    """A `tegrastats` executable (here a script printing a captured Orin line every 50 ms, as
    the real one does with --interval) is started, read and stopped."""
    import sys
    import time

    exe = tmp_path / 'tegrastats'
    exe.write_text(
        f'#!{sys.executable}\nimport sys, time\nassert sys.argv[1] == "--interval"\n'
        f'while True:\n    print({ORIN!r}, flush=True)\n    time.sleep(0.05)\n'
    )
    exe.chmod(0o755)
    source = TegrastatsSource(command=str(exe))
    try:
        deadline = time.monotonic() + 10
        while (reading := source.read()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        source.close()
    assert reading.source == 'tegrastats' and reading.total_watts == pytest.approx(5.256)
