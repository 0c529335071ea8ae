"""Recorder node: Diagnosis, Alert and PowerSample -> CSV files in a run directory under data/.

Loses nothing on SIGINT/SIGTERM (rows flushed and files closed in close()); a full disk stops
recording with an ERROR on /diagnostics, keeping what was written.
"""

from __future__ import annotations

import math

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from skin_screening_msgs.msg import Alert, Diagnosis, PowerSample

from ..core.frames import stamp_to_ns
from ..core.recording import RecordingError, SessionRecorder
from ..core.sessions import disk_bytes
from .common import (
    alert_qos,
    descriptor,
    diagnostics,
    exit_with_replay,
    run_node,
)
from .session import open_session, session_parameters


class RecorderNode(Node):
    def __init__(self, **kwargs):
        super().__init__('recorder', **kwargs)
        exit_with_replay(self)
        p = self.declare_parameter
        p(
            'output_dir',
            'data/runs',
            descriptor('Folder of the sessions: <output_dir>/<session>/.', read_only=True),
        )
        session_parameters(self)
        p(
            'energy_window_s',
            10.0,
            descriptor(
                'Window for energy per inference.', read_only=True, float_range=(0.1, 3600.0)
            ),
        )
        p(
            'flush_every',
            20,
            descriptor('Rows between flushes.', read_only=True, int_range=(1, 100000)),
        )
        p(
            'min_free_mb',
            50.0,
            descriptor(
                'Refuse new rows below this free disk space.',
                read_only=True,
                float_range=(0.0, 1e6),
            ),
        )
        gp = self.get_parameter
        self.session = open_session(self)
        self.run_dir = self.session.folder
        self._other_csv = self._other_sessions_csv()
        self._rec = SessionRecorder(
            self.run_dir,
            gp('energy_window_s').value,
            gp('flush_every').value,
            gp('min_free_mb').value,
        )
        self._failed = ''
        qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Diagnosis, 'diagnosis', self._on_diagnosis, qos)
        # The inference node latches its current alert: this gets it even when matched late.
        self.create_subscription(Alert, 'alert', self._on_alert, alert_qos(depth=100))
        self.create_subscription(PowerSample, 'power', self._on_power, qos)
        self._diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(1.0, self._report)
        self.get_logger().info(f'recording to {self.run_dir}')

    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    def _guard(self, write) -> None:
        if self._failed:
            return
        try:
            write()
        except RecordingError as exc:
            self._failed = str(exc)
            self.get_logger().error(self._failed)
            self._report()

    def _on_diagnosis(self, m: Diagnosis) -> None:
        row = {
            'stamp_ns': stamp_to_ns(m.header.stamp),
            'frame_id': m.header.frame_id,
            'received_ns': self._now(),
            'decision': m.decision,
            'label': m.label,
            'unassessable_reason': m.unassessable_reason,
            'probability': m.probability,
            'threshold': m.threshold,
            'operating_point': m.operating_point,
            'entropy': m.entropy,
            'epistemic': m.epistemic,
            'ambiguity': m.ambiguity,
            'referral_score': m.referral_score,
            'referral_threshold': m.referral_threshold,
            'precision': m.precision,
            'backend': m.backend,
            'model_id': m.model_id,
            'inference_ms': m.inference_ms,
            'latency_ms': m.latency_ms,
        }
        self._guard(lambda: self._rec.diagnosis(row))

    def _on_alert(self, m: Alert) -> None:
        row = {
            'stamp_ns': stamp_to_ns(m.header.stamp),
            'frame_id': m.header.frame_id,
            'received_ns': self._now(),
            'level': m.level,
            'probability': m.probability,
            'uncertainty': m.uncertainty,
            'frames': m.frames,
            'text': m.text,
        }
        self._guard(lambda: self._rec.alert(row))

    def _on_power(self, m: PowerSample) -> None:
        if not math.isfinite(m.total_watts):
            return
        rails = [{'name': r.name, 'watts': r.watts} for r in m.rails]
        self._guard(
            lambda: self._rec.power(
                self._now(), stamp_to_ns(m.header.stamp), m.source, m.total_watts, rails
            )
        )

    def _other_sessions_csv(self) -> int:
        """Bytes of the other sessions' CSVs (fixed while this one runs, until retention removes
        some): with this session's, the budget's part that nothing may evict."""
        others = self.session.root.glob('*/*.csv')
        return disk_bytes(f for f in others if f.parent != self.run_dir)

    def _report(self) -> None:
        if self.session.retention_due():
            self._other_csv = self._other_sessions_csv()
        rows = {f'{k}_rows': log.rows for k, log in self._rec.logs.items()}
        csv_bytes = self._other_csv + self._rec.bytes()
        level, message = DiagnosticStatus.OK, f'recording to {self.run_dir}'
        if csv_bytes > self.session.max_bytes:  # keeps recording: the evidence gives way
            level = DiagnosticStatus.WARN
            message = (
                f'the CSVs alone ({csv_bytes / 1e6:.2f} MB) exceed the disk budget '
                f'({self.session.max_bytes / 1e6:.2f} MB): still recording, no room for evidence'
            )
        if self._failed:
            level, message = DiagnosticStatus.ERROR, self._failed
        values = rows | {'csv_mb': f'{csv_bytes / 1e6:.3f}'}
        self._diag.publish(diagnostics(self, 'recorder', level, message, 'disk', values))

    def close(self) -> None:
        summary = self._rec.close()
        # After Ctrl-C the context is gone and the node's logger cannot reach /rosout any more
        logger = self.get_logger() if self.context.ok() else get_logger('skin_screening')
        logger.info(f'recorder closed {self.run_dir}: {summary}')


def main(args=None) -> None:
    run_node(RecorderNode, args)


if __name__ == '__main__':
    main()
