"""The power monitor node on fixture sysfs trees (tests/power_tree.py), over real rclpy."""

import pytest

from tests.nodes_helpers import RELIABLE, node_process, probe_node, stop, wait_for


@pytest.mark.ros
def test_power_monitor_publishes_the_board_sensor(ros_env, tmp_path):
    """Auto-detection on a fixture INA3221 tree (first in the order, so the same on any host):
    PowerSamples with the input rail as total and every rail listed."""
    from tests.power_tree import ina3221_tree

    sysfs = ina3221_tree(tmp_path / 'sys', [('VDD_IN', 5000, 1200), ('VDD_SOC', 5000, 300)])
    samples = power_samples(ros_env, tmp_path, 3, sysfs_root=str(sysfs))
    assert {s.source for s in samples} == {'ina3221'}
    assert all(s.total_watts == pytest.approx(6.0) for s in samples)  # VDD_IN, not the sum
    assert [(r.name, round(r.watts, 3)) for r in samples[0].rails] == [
        ('VDD_IN', 6.0),
        ('VDD_SOC', 1.5),
    ]


@pytest.mark.ros
def test_power_monitor_reads_rapl_counters(ros_env, tmp_path):
    """source:=rapl on a powercap tree whose energy counter a thread here advances at 3 W
    (3e6 uJ/s, in 20 ms steps): the node's samples are that power."""
    import threading
    import time

    from tests.power_tree import rapl_tree

    sysfs = rapl_tree(tmp_path / 'sys')
    counter = sysfs / 'class/powercap/intel-rapl:0/energy_uj'
    stop_counting = threading.Event()

    def count():
        start = time.monotonic()
        while not stop_counting.wait(0.02):
            tmp = counter.with_suffix('.tmp')
            tmp.write_text(f'{int((time.monotonic() - start) * 3e6)}\n')
            tmp.replace(counter)

    thread = threading.Thread(target=count, daemon=True)
    thread.start()
    try:
        samples = power_samples(
            ros_env, tmp_path, 8, source='rapl', sysfs_root=str(sysfs), rate_hz=5.0
        )
    finally:
        stop_counting.set()
    watts = sorted(s.total_watts for s in samples)
    assert {s.source for s in samples} == {'rapl'}
    assert watts[len(watts) // 2] == pytest.approx(3.0, rel=0.1)  # median: the counter's rate


def power_samples(env, tmp_path, count: int, **params) -> list:
    """Start the power monitor with `params`; the first `count` PowerSamples it publishes."""
    from skin_screening_msgs.msg import PowerSample

    proc = node_process('power_monitor_node', 'power_monitor', env, tmp_path / 'log', **params)
    samples = []
    try:
        with probe_node() as node:
            node.create_subscription(PowerSample, 'power', samples.append, RELIABLE)
            wait_for(lambda: len(samples) >= count, 30, f'{count} power samples')
    finally:
        stop(proc)
    return samples
