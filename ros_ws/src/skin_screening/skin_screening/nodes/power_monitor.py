"""Power monitor node: the board's power draw -> skin_screening_msgs/PowerSample.

Sources in auto-detect order: INA3221 sysfs, tegrastats, NVML, Intel RAPL (or the one named by
`source`). With no source it says so once in the log and on /diagnostics and publishes nothing.
"""

from __future__ import annotations

from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from skin_screening_msgs.msg import PowerRail, PowerSample
from std_msgs.msg import Header

from ..core.power import PowerSourceUnavailable, detect_source
from .common import descriptor, diagnostics, exit_with_replay, run_node


class PowerMonitorNode(Node):
    def __init__(self, **kwargs):
        super().__init__('power_monitor', **kwargs)
        exit_with_replay(self)
        p = self.declare_parameter
        p('rate_hz', 10.0, descriptor('Sampling rate.', read_only=True, float_range=(0.1, 1000.0)))
        p(
            'source',
            'auto',
            descriptor(
                'Power source.',
                read_only=True,
                choices=['auto', 'ina3221', 'tegrastats', 'nvml', 'rapl'],
            ),
        )
        p(
            'sysfs_root',
            '/sys',
            descriptor('Root of sysfs (tests point it at a fixture tree).', read_only=True),
        )
        self._pub = self.create_publisher(PowerSample, 'power', 50)
        self._diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        gp = self.get_parameter
        order = None if gp('source').value == 'auto' else (gp('source').value,)
        self.samples = 0
        try:
            self._source = detect_source(Path(gp('sysfs_root').value), order)
            self._problem = ''
            self.get_logger().info(f'power source: {self._source.name}')
        except PowerSourceUnavailable as exc:
            self._source, self._problem = None, str(exc)
            self.get_logger().warning(f'{exc}: publishing no power samples')
        if self._source is not None:
            self.create_timer(1.0 / gp('rate_hz').value, self._sample)
        self.create_timer(1.0, self._report)
        self._report()

    def _sample(self) -> None:
        try:
            reading = self._source.read()
        except PowerSourceUnavailable as exc:
            self._problem = str(exc)
            self.get_logger().warning(str(exc), throttle_duration_sec=10.0)
            return
        if reading is None:  # e.g. RAPL needs two reads for a first power value
            return
        self._problem = ''
        rails = [
            PowerRail(name=r.name, volts=r.volts, amps=r.amps, watts=r.watts)
            for r in reading.rails
        ]
        self._pub.publish(
            PowerSample(
                header=Header(stamp=self.get_clock().now().to_msg()),
                source=reading.source,
                total_watts=reading.total_watts,
                rails=rails,
            )
        )
        self.samples += 1

    def _report(self) -> None:
        if self._source is None:
            level, message = DiagnosticStatus.WARN, f'not measuring: {self._problem}'
        elif self._problem:
            level, message = DiagnosticStatus.ERROR, self._problem
        else:
            level, message = DiagnosticStatus.OK, f'measuring with {self._source.name}'
        self._diag.publish(
            diagnostics(
                self,
                'power',
                level,
                message,
                getattr(self._source, 'name', 'none'),
                {'samples': self.samples},
            )
        )

    def close(self) -> None:
        if self._source is not None:
            self._source.close()


def main(args=None) -> None:
    run_node(PowerMonitorNode, args)


if __name__ == '__main__':
    main()
