"""Inference node: camera Image -> skin_screening_msgs/Diagnosis (+ Alert, /diagnostics).

States: the engine is loaded when the node is configured (at construction); a model that does
not load stops the node with one clear error, so there is never a node "running" with no model.
Only then are the subscription and publishers created (active). Changing `precision`, `backend`
or the thresholds at run time swaps the engine / rule without restarting; a swap that fails is
rejected and the running engine stays.

Frames go through a bounded queue (depth `queue_size`, 1 = keep only the newest frame): when
inference falls behind, the oldest waiting frame is dropped and counted, never a growing backlog.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from skin_screening_msgs.msg import Alert, Diagnosis

from ..core.alerts import AlertRule, AlertWindow
from ..core.classifier import Classifier
from ..core.engines import EngineError
from ..core.explain import overlay
from ..core.frames import message_to_rgb, rgb_to_fields
from ..core.model_card import ModelCardError
from ..core.postprocess import LABELS, DecisionRule, NonFiniteOutput
from ..core.precision import Backend, Precision
from ..core.preprocess import FrameError
from ..core.stats import RunningStats
from .common import descriptor, diagnostics, nan_if_none, run_node, stamp_to_ns

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
SWAP_PARAMS = {'precision', 'backend', 'threshold', 'referral_threshold', 'tta_views'}


class ConfigurationError(RuntimeError):
    pass


class InferenceNode(Node):
    def __init__(self, **kwargs):
        super().__init__('inference', **kwargs)
        p = self.declare_parameter
        p(
            'model_dir',
            'data/models/mobilenetv2-a0.5',
            descriptor('Folder with model_card.json and the ONNX variants.', read_only=True),
        )
        p(
            'precision',
            'fp32',
            descriptor('Engine precision.', choices=[x.value for x in Precision]),
        )
        p(
            'backend',
            'onnxruntime',
            descriptor('Inference backend.', choices=[x.value for x in Backend]),
        )
        p(
            'fallback_backend',
            '',
            descriptor(
                'Backend to use if `backend` cannot load (empty: none, fail instead).',
                read_only=True,
            ),
        )
        p(
            'threads',
            0,
            descriptor(
                'CPU threads for ONNX Runtime (0 = all).', read_only=True, int_range=(0, 64)
            ),
        )
        p(
            'threshold',
            -1.0,
            descriptor("Decision threshold; -1 = the model card's.", float_range=(-1.0, 1.0)),
        )
        p(
            'referral_threshold',
            -1.0,
            descriptor(
                "Bound on the model card's referral score above which to REFER; "
                "-1 = the model card's (or off).",
                float_range=(-1.0, 1.0),
            ),
        )
        p(
            'tta_views',
            0,
            descriptor(
                'Test-time augmentation: dihedral views per frame in one engine call '
                "(1, 2, 4 or 8; 0 = the model card's).",
                int_range=(0, 8),
            ),
        )
        p(
            'publish_cam',
            False,
            descriptor(
                'Also publish the class activation map over the model view on diagnosis/cam.',
                read_only=True,
            ),
        )
        p(
            'compressed',
            False,
            descriptor('Subscribe to sensor_msgs/CompressedImage.', read_only=True),
        )
        p(
            'reliable',
            False,
            descriptor(
                'RELIABLE input QoS (bag replay); default sensor-data (best effort).',
                read_only=True,
            ),
        )
        p(
            'queue_size',
            1,
            descriptor(
                'Frames waiting for inference; older ones are dropped.',
                read_only=True,
                int_range=(1, 1000),
            ),
        )
        p(
            'alert_window',
            15,
            descriptor('Frames in the alert window.', read_only=True, int_range=(1, 1000)),
        )
        p(
            'alert_min_frames',
            10,
            descriptor('Frames needed before any alert.', read_only=True, int_range=(1, 1000)),
        )
        p(
            'alert_raise',
            0.6,
            descriptor(
                'Mean probability that raises an alert.', read_only=True, float_range=(0.0, 1.0)
            ),
        )
        p(
            'alert_clear',
            0.4,
            descriptor(
                'Mean probability below which it clears.', read_only=True, float_range=(0.0, 1.0)
            ),
        )
        self._lock = threading.Lock()
        self._classifier = self._configure(self._values())
        gp = self.get_parameter
        self._alerts = AlertWindow(
            AlertRule(
                gp('alert_window').value,
                gp('alert_min_frames').value,
                gp('alert_raise').value,
                gp('alert_clear').value,
                self._classifier.rule.referral_threshold,
            )
        )
        self._stats = RunningStats()
        self._queue: deque = deque(maxlen=gp('queue_size').value)
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._last_problem: tuple[bytes, str] | None = None
        self._diagnosis_pub = self.create_publisher(Diagnosis, 'diagnosis', 50)
        self._alert_pub = self.create_publisher(Alert, 'alert', 10)
        self._cam_pub = None
        if gp('publish_cam').value:
            self._cam_pub = self.create_publisher(Image, 'diagnosis/cam', qos_profile_sensor_data)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        qos = qos_profile_sensor_data
        if gp('reliable').value:
            qos = QoSProfile(
                depth=max(10, gp('queue_size').value), reliability=ReliabilityPolicy.RELIABLE
            )
        compressed = gp('compressed').value
        topic = 'image_raw/compressed' if compressed else 'image_raw'
        self.create_subscription(
            CompressedImage if compressed else Image, topic, self._on_image, qos
        )
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(1.0, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name='inference', daemon=True)
        self._worker.start()
        c = self._classifier
        self.get_logger().info(
            f'active: {c.model_id} {c.precision.value} on {c.backend.value}, '
            f'listening on {self.resolve_topic_name(topic)}'
        )

    # configuration -------------------------------------------------------------------------
    def _values(self, overrides: dict | None = None) -> dict:
        values = {
            name: self.get_parameter(name).value
            for name in (
                'model_dir',
                'precision',
                'backend',
                'fallback_backend',
                'threads',
                'threshold',
                'referral_threshold',
                'tta_views',
            )
        }
        return values | (overrides or {})

    def _configure(self, v: dict) -> Classifier:
        """Open the engine; raise ConfigurationError saying why it cannot be used."""
        backends = [v['backend']] + ([v['fallback_backend']] if v['fallback_backend'] else [])
        errors = []
        for backend in backends:
            try:
                clf = Classifier(v['model_dir'], v['precision'], backend, v['threads'] or None)
            except (EngineError, ModelCardError, ValueError) as exc:
                errors.append(f'{backend}: {exc}')
                continue
            rule = clf.card.decision.to_dict()
            if v['threshold'] >= 0:
                rule['threshold'] = v['threshold']
            if v['referral_threshold'] >= 0:
                rule['referral_threshold'] = v['referral_threshold']
            if v['tta_views'] > 0:
                rule['views'] = v['tta_views']
            try:
                clf.rule = DecisionRule.from_dict(rule)
            except ValueError as exc:
                errors.append(f'{backend}: {exc}')
                clf.close()
                continue
            if self.get_parameter('publish_cam').value and not clf.has_cam:
                errors.append(f'{backend}: {clf.engine.path.name} has no CAM output')
                clf.close()
                continue
            if errors:
                self.get_logger().warning(f'fell back to {backend}: {errors[0]}')
            return clf
        raise ConfigurationError('; '.join(errors))

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name in SWAP_PARAMS}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            classifier = self._configure(self._values(changes))
        except ConfigurationError as exc:
            self.get_logger().error(f'parameter change rejected, engine kept: {exc}')
            return SetParametersResult(successful=False, reason=str(exc))
        with self._lock:
            old, self._classifier = self._classifier, classifier
        old.close()
        self.get_logger().info(
            f'engine swapped: {classifier.precision.value} on '
            f'{classifier.backend.value}, threshold {classifier.rule.threshold}'
        )
        return SetParametersResult(successful=True)

    # data path -----------------------------------------------------------------------------
    def _on_image(self, msg) -> None:
        with self._wake:
            if len(self._queue) == self._queue.maxlen:
                self._stats.dropped += 1
            self._queue.append(msg)
            self._stats.received += 1
            self._wake.notify()

    def _work(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                while not self._queue and not self._stop.is_set():
                    self._wake.wait(0.2)
                if self._stop.is_set():
                    return
                msg = self._queue.popleft()
            self._process(msg)

    def _problem(self, level: bytes, text: str) -> None:
        self._stats.errors += 1
        self._last_problem = (level, text)
        self.get_logger().warning(text, throttle_duration_sec=5.0)
        self._publish_diagnostics()

    def _process(self, msg) -> None:
        try:
            rgb = message_to_rgb(msg)
        except FrameError as exc:
            self._problem(WARN, f'frame rejected: {exc}')
            return
        with self._lock:
            clf = self._classifier
            try:
                if self._cam_pub is None:
                    scores, engine_ms = clf.classify([rgb])
                else:
                    scores, engine_ms, cams, crops = clf.explain([rgb])
                    cam = Image(header=msg.header, **rgb_to_fields(overlay(crops[0], cams[0])))
            except NonFiniteOutput as exc:
                self._problem(ERROR, f'no diagnosis: {exc}')
                return
            except FrameError as exc:
                self._problem(WARN, f'frame rejected: {exc}')
                return
        out = Diagnosis(header=msg.header)
        decision = int(scores.decision[0])
        out.decision, out.label = decision, LABELS[decision]
        out.probability = float(scores.probability[0])
        out.entropy, out.epistemic = float(scores.entropy[0]), float(scores.epistemic[0])
        out.ambiguity, out.referral_score = float(scores.ambiguity[0]), clf.rule.referral_score
        out.threshold = float(clf.rule.threshold)
        out.referral_threshold = nan_if_none(clf.rule.referral_threshold)
        out.precision, out.backend, out.model_id = (
            clf.precision.value,
            clf.backend.value,
            clf.model_id,
        )
        out.inference_ms = float(engine_ms)
        now_ns = self.get_clock().now().nanoseconds
        out.latency_ms = (now_ns - stamp_to_ns(msg.header.stamp)) / 1e6
        self._diagnosis_pub.publish(out)
        if self._cam_pub is not None:
            self._cam_pub.publish(cam)
        self._stats.processed(out.latency_ms, engine_ms, time.monotonic())
        uncertainty = float(scores.uncertainty(clf.rule.referral_score)[0])
        event = self._alerts.update(out.probability, uncertainty, stamp_to_ns(msg.header.stamp))
        if event is not None:
            self._alert_pub.publish(
                Alert(
                    header=msg.header,
                    level=event.level,
                    probability=event.probability,
                    uncertainty=event.uncertainty,
                    frames=event.frames,
                    text=event.text,
                )
            )

    def _publish_diagnostics(self) -> None:
        clf, stats = self._classifier, self._stats
        level, message = OK, 'running'
        if self._last_problem is not None:
            level, message = self._last_problem
            self._last_problem = None
        values = {
            'model': clf.model_id,
            'engine': str(clf.engine.path),
            'precision': clf.precision.value,
            'backend': clf.backend.value,
            'threshold': f'{clf.rule.threshold:.4f}',
        } | stats.summary()
        self._diag_pub.publish(
            diagnostics(self, 'inference', level, message, clf.backend.value, values)
        )

    def close(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._worker.join(timeout=5)


def main(args=None) -> None:
    def factory():
        try:
            return InferenceNode()
        except ConfigurationError as exc:
            rclpy.logging.get_logger('inference').fatal(f'cannot configure, not starting: {exc}')
            raise SystemExit(1) from None

    run_node(factory, args)


if __name__ == '__main__':
    main()
