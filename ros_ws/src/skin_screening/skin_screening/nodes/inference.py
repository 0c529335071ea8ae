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
from ..core.frames import message_to_rgb, rgb_to_fields, stamp_to_ns
from ..core.gate_health import GateHealth, GateStatus
from ..core.model_card import ModelCardError
from ..core.operating_points import CUSTOM
from ..core.postprocess import (
    LABELS,
    UNASSESSABLE,
    DecisionRule,
    NonFiniteOutput,
    logit,
    sigmoid,
)
from ..core.precision import parse_backend, parse_precision
from ..core.preprocess import FrameError
from ..core.stats import RunningStats
from .common import (
    ReasonThrottle,
    alert_qos,
    descriptor,
    diagnostics,
    exit_with_replay,
    nan_if_none,
    run_node,
)
from .inference_params import PARAMETERS, SWAP_PARAMS

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class ConfigurationError(RuntimeError):
    pass


class InferenceNode(Node):
    def __init__(self, **kwargs):
        super().__init__('inference', **kwargs)
        exit_with_replay(self)
        for name, default, text, limits in PARAMETERS:
            self.declare_parameter(name, default, descriptor(text, **limits))
        self._lock = threading.Lock()
        self._classifier = self._configure(self._values())
        gp = self.get_parameter
        self._alerts = AlertWindow(self._alert_rule(self._classifier))
        self._stats = RunningStats()
        self._queue: deque = deque(maxlen=gp('queue_size').value)
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._last_problem: tuple[bytes, str] | None = None
        self._log_throttle = ReasonThrottle(5.0)
        self._diagnosis_pub = self.create_publisher(Diagnosis, 'diagnosis', 50)
        self._alert_pub = self.create_publisher(Alert, 'alert', alert_qos())
        self._matched = 0
        self._cam_pub = None
        if gp('publish_cam').value:
            self._cam_pub = self.create_publisher(Image, 'diagnosis/cam', qos_profile_sensor_data)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        # the gate's health over the recent frames (core/gate_health.py), latched for late joiners
        self._gate_pub = self.create_publisher(DiagnosticStatus, 'gate/status', alert_qos())
        self._gate = GateHealth()
        self._gate_status: GateStatus = self._gate.status()
        self._publish_gate()
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
        self.create_timer(0.1, self._watch_matches)
        self._worker = threading.Thread(target=self._work, name='inference', daemon=True)
        self._worker.start()
        c = self._classifier
        self.get_logger().info(
            f'active: {c.model_id} {c.precision.value} on {c.backend.value} at operating '
            f'point {c.operating_point} (threshold {c.rule.threshold:.4f}), '
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
                'operating_point',
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
        try:
            precision = parse_precision(v['precision'])
            backends = [parse_backend(v['backend'])]
            if v['fallback_backend']:
                backends.append(parse_backend(v['fallback_backend']))
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        backends = list(dict.fromkeys(backends))  # a fallback equal to the backend adds nothing
        errors = []
        for backend in backends:
            try:
                clf = Classifier(
                    v['model_dir'],
                    precision,
                    backend,
                    v['threads'] or None,
                    operating_point=v['operating_point'] or None,
                )
            except (EngineError, ModelCardError, ValueError) as exc:
                errors.append(f'{backend.value}: {exc}')
                continue
            rule = clf.rule.to_dict()  # this variant's calibration at the operating point
            if v['threshold'] >= 0:
                rule['threshold'] = v['threshold']
                clf.operating_point = CUSTOM
            if v['referral_threshold'] >= 0:
                rule['referral_threshold'] = v['referral_threshold']
            if v['tta_views'] > 0:
                rule['views'] = v['tta_views']
            try:
                clf.rule = DecisionRule.from_dict(rule)
            except ValueError as exc:
                errors.append(f'{backend.value}: {exc}')
                clf.close()
                continue
            if self.get_parameter('publish_cam').value and not clf.has_cam:
                errors.append(f'{backend.value}: {clf.engine.path.name} has no CAM output')
                clf.close()
                continue
            if errors:
                self.get_logger().warning(f'fell back to {backend.value}: {errors[0]}')
            return clf
        raise ConfigurationError('; '.join(errors))

    def _alert_rule(self, clf: Classifier) -> AlertRule:
        """Alert levels: given, or following the decision threshold (one logit of hysteresis)."""
        gp = self.get_parameter
        raise_at = gp('alert_raise').value
        raise_at = clf.rule.threshold if raise_at < 0 else raise_at
        clear_at = gp('alert_clear').value
        clear_at = float(sigmoid(logit(raise_at) - 1.0)) if clear_at < 0 else clear_at
        return AlertRule(
            gp('alert_window').value,
            gp('alert_min_frames').value,
            raise_at,
            clear_at,
            clf.rule.referral_threshold,
        )

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name in SWAP_PARAMS}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            classifier = self._configure(self._values(changes))
        except ConfigurationError as exc:
            self.get_logger().error(f'parameter change rejected, engine kept: {exc}')
            return SetParametersResult(successful=False, reason=str(exc))
        try:
            alerts = AlertWindow(self._alert_rule(classifier))
        except ValueError as exc:  # e.g. a threshold under the fixed alert_clear
            classifier.close()
            self.get_logger().error(f'parameter change rejected, engine kept: {exc}')
            return SetParametersResult(successful=False, reason=str(exc))
        with self._lock:
            old, self._classifier = self._classifier, classifier
            if alerts.rule != self._alerts.rule:  # the evidence means something else now
                self._alerts = alerts
        old.close()
        self.get_logger().info(
            f'engine swapped: {classifier.precision.value} on '
            f'{classifier.backend.value}, operating point {classifier.operating_point} '
            f'(threshold {classifier.rule.threshold:.4f})'
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
            try:
                self._process(msg)
            except Exception:
                if not self.context.ok():  # shutting down: nothing may be published any more
                    return
                raise

    def _problem(self, level: bytes, text: str) -> None:
        """A frame that gets no Diagnosis: counted, on /diagnostics at once, logged per reason."""
        self._stats.errors += 1
        if self._log_throttle(text):
            self.get_logger().warning(text)
        self._publish_diagnostics((level, text))

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
        out.unassessable_reason = scores.reasons[0] if scores.reasons else ''
        out.probability = float(scores.probability[0])
        out.entropy, out.epistemic = float(scores.entropy[0]), float(scores.epistemic[0])
        out.ambiguity, out.referral_score = float(scores.ambiguity[0]), clf.rule.referral_score
        out.threshold, out.operating_point = float(clf.rule.threshold), clf.operating_point
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
        self._gate_health(out.unassessable_reason)
        if decision == UNASSESSABLE:  # no evidence either way: never an alert, never a clear
            self._stats.unassessable += 1
            return
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

    def _gate_health(self, reason: str) -> None:
        """Count the frame in the gate's window; a change of level is said at once."""
        status = self._gate.update(time.monotonic(), reason)
        changed = status.level != self._gate_status.level
        self._gate_status = status
        if changed:
            self._publish_gate()
            self._publish_diagnostics()

    def _publish_gate(self) -> None:
        status = self._gate_status
        level = bytes([status.level])
        self._gate_pub.publish(DiagnosticStatus(level=level, name='gate', message=status.message))

    def _watch_matches(self) -> None:
        """Report at once when a diagnosis subscriber matches or leaves: a bag player waits for
        the recorder's subscription to be matched HERE before its first frame."""
        if self._diagnosis_pub.get_subscription_count() != self._matched:
            self._publish_diagnostics()

    def _publish_diagnostics(self, problem: tuple[bytes, str] | None = None) -> None:
        """The node's status; a `problem` is published as it happens and repeated by the next
        periodic status (so a slow subscriber still sees the last one)."""
        clf, stats = self._classifier, self._stats
        if problem is not None:
            self._last_problem = problem
            level, message = problem
        else:
            level, message = self._last_problem or (OK, 'running')
            self._last_problem = None
        gate = self._gate_status
        if gate.level and bytes([gate.level]) > level:  # never silently blind
            level, message = bytes([gate.level]), gate.message
        self._matched = self._diagnosis_pub.get_subscription_count()
        values = {
            'model': clf.model_id,
            'engine': str(clf.engine.path),
            'precision': clf.precision.value,
            'backend': clf.backend.value,
            'operating_point': clf.operating_point,
            'threshold': f'{clf.rule.threshold:.4f}',
            'diagnosis_subscribers': self._matched,  # matched by this publisher, not the graph
            'unassessable_share': f'{gate.share:.3f}',
            'unassessable_reason': gate.dominant,
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
