"""Findings node: a downstream consumer of the public topics that keeps the evidence of each
alert episode (core/findings.py) for the clinician's session report (result.py --session).

Written as a third party would write one: it subscribes to `alert` (latched: it gets the
current alert even when it starts late), `diagnosis`, the camera's `image_raw`, the optional
`diagnosis/cam` overlays and `power`, and matches them by the SOURCE frame's header stamp. It is
a separate process: the inference path never waits for it (measured: benchmarks/findings.py).
"""

from __future__ import annotations

import os
from collections import OrderedDict

import cv2
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from skin_screening_msgs.msg import Alert, Diagnosis, PowerSample

from ..core.findings import FindingsStore
from ..core.frames import FrameError, message_to_rgb, stamp_to_ns
from .common import alert_qos, descriptor, diagnostics, exit_with_replay, run_node
from .session import open_session, session_parameters


class Recent(OrderedDict):
    """The last `size` items by stamp."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def add(self, stamp: int, item) -> None:
        self[stamp] = item
        while len(self) > self.size:
            self.popitem(last=False)


class FindingsNode(Node):
    def __init__(self, **kwargs):
        super().__init__('findings', **kwargs)
        exit_with_replay(self)
        p = self.declare_parameter
        p(
            'output_dir',
            'data/runs',
            descriptor(
                'Folder of the sessions; evidence goes to <output_dir>/<session>/findings/.',
                read_only=True,
            ),
        )
        session_parameters(self)
        p(
            'compressed',
            False,
            descriptor(
                'Camera frames as sensor_msgs/CompressedImage on image_raw/compressed (as the '
                'inference node with compressed:=true).',
                read_only=True,
            ),
        )
        p(
            'frames_per_finding',
            3,
            descriptor(
                'Frames kept per episode (highest probability).',
                read_only=True,
                int_range=(1, 100),
            ),
        )
        p(
            'buffer_frames',
            120,
            descriptor(
                'Recent frames kept to match diagnoses by stamp.',
                read_only=True,
                int_range=(10, 10000),
            ),
        )
        p(
            'jpeg_quality',
            90,
            descriptor('JPEG quality of the evidence.', read_only=True, int_range=(10, 100)),
        )
        p(
            'nice',
            10,
            descriptor(
                'CPU niceness of this process: the inference node comes first.',
                read_only=True,
                int_range=(0, 19),
            ),
        )
        gp = self.get_parameter
        self.session = open_session(self)
        self.store = FindingsStore(
            self.session.folder / 'findings',
            self.session.max_bytes,
            gp('frames_per_finding').value,
            budget_root=self.session.root,
            watch=self.session.folder,
        )
        size = gp('buffer_frames').value
        self._frames, self._cams, self._diagnoses = Recent(size), Recent(size), Recent(size)
        self._power: float | None = None
        self._quality = gp('jpeg_quality').value
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        # best effort as a camera sends, deep enough not to lose frames while writing evidence
        frames_qos = QoSProfile(depth=60, reliability=ReliabilityPolicy.BEST_EFFORT)
        compressed = gp('compressed').value
        self.create_subscription(
            CompressedImage if compressed else Image,
            'image_raw/compressed' if compressed else 'image_raw',
            self._on_frame,
            frames_qos,
        )
        # overlays come best effort (sensor data QoS), after their Diagnosis
        self.create_subscription(Image, 'diagnosis/cam', self._on_cam, frames_qos)
        self.create_subscription(Diagnosis, 'diagnosis', self._on_diagnosis, reliable)
        self.create_subscription(Alert, 'alert', self._on_alert, alert_qos(depth=100))
        self.create_subscription(PowerSample, 'power', self._on_power, 10)
        self._diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(1.0, self._report)
        self.get_logger().info(f'keeping the evidence of alerts in {self.store.root}')

    def _on_frame(self, msg: Image) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        self._frames.add(stamp, msg)
        if self.store.holding(stamp):  # kept from its Diagnosis, which came first
            jpeg = self._jpeg(msg)
            if jpeg is not None:
                self.store.attach(stamp, '.jpg', jpeg)

    def _on_cam(self, msg: Image) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        self._cams.add(stamp, msg)
        jpeg = self._jpeg(msg) if self.store.holding(stamp) else None
        if jpeg is not None:
            self.store.attach(stamp, '.cam.jpg', jpeg)

    def _on_power(self, msg: PowerSample) -> None:
        self._power = float(msg.total_watts)

    def _on_alert(self, msg: Alert) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        if msg.level == Alert.CLEAR:
            ended = self.store.end(stamp)
            if ended is not None:
                self.get_logger().info(
                    f'finding {ended.folder.name} ended ({ended.frames_seen} '
                    f'frames, max p={ended.max_probability:.2f})'
                )
            return
        fresh = self.store.open is None
        self.store.start(stamp, msg.level, msg.text)
        if fresh:  # the frames that raised it, and any processed before the alert was
            stamps = list(self._diagnoses)
            window = [s for s in stamps if s <= stamp][-int(msg.frames) :]
            for d_stamp in window + [s for s in stamps if s > stamp]:
                self._offer(self._diagnoses[d_stamp])

    def _on_diagnosis(self, msg: Diagnosis) -> None:
        if msg.decision == Diagnosis.UNASSESSABLE:  # shows no lesion to judge: never evidence
            return
        self._diagnoses.add(stamp_to_ns(msg.header.stamp), msg)
        if self.store.open is not None:
            self._offer(msg)

    def _jpeg(self, msg: Image | None) -> bytes | None:
        if msg is None:
            return None
        try:
            rgb = message_to_rgb(msg)
        except FrameError:
            return None
        ok, buf = cv2.imencode('.jpg', rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        return buf.tobytes() if ok else None

    def _offer(self, d: Diagnosis) -> None:
        stamp = stamp_to_ns(d.header.stamp)
        record = {
            'stamp_ns': stamp,
            'frame_id': d.header.frame_id,
            'label': d.label,
            'probability': float(d.probability),
            'threshold': float(d.threshold),
            'entropy': float(d.entropy),
            'ambiguity': float(d.ambiguity),
            'referral_score': d.referral_score,
            'precision': d.precision,
            'backend': d.backend,
            'model_id': d.model_id,
            'power_w': self._power,
            'has_frame': self._frames.get(stamp) is not None,
        }
        self.store.offer(
            stamp,
            float(d.probability),
            record,
            self._jpeg(self._frames.get(stamp)),
            self._jpeg(self._cams.get(stamp)),
        )

    def _report(self) -> None:
        store = self.store
        room = store.tick()
        if self.session.retention_due():
            store.rescan()
        values = {
            'findings': len(store.closed) + (store.open is not None),
            'open': store.open.folder.name if store.open else '',
            'disk_mb': f'{store.bytes / 1e6:.3f}',
            'max_disk_mb': f'{store.max_bytes / 1e6:.3f}',
            'dropped_images': sum(e.dropped for e in store.closed),
            'refused_writes': store.refused,
            'refused_mb': f'{store.refused_bytes / 1e6:.3f}',
        }
        level, message = DiagnosticStatus.OK, 'ok'
        if store.refused or not room:
            level = DiagnosticStatus.WARN
            message = (
                f'disk budget full ({store.bytes / 1e6:.2f} of {store.max_bytes / 1e6:.2f} MB): '
                f'{store.refused} evidence writes refused'
            )
        self._diag.publish(diagnostics(self, 'findings', level, message, 'findings', values))

    def close(self) -> None:
        if self.store.open is not None:  # an episode still open at the end of the session
            self.store.end(max(self._diagnoses, default=self.store.open.start_ns))


def main(args=None) -> None:
    def factory() -> FindingsNode:
        node = FindingsNode()
        os.nice(node.get_parameter('nice').value)  # the process, not a node made in a test
        return node

    run_node(factory, args)


if __name__ == '__main__':
    main()
