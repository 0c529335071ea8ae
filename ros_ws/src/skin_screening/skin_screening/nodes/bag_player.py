"""Bag player node: a rosbag2's camera frames -> `image_raw`, read with rosbags (no rosbag2 here).

rate > 0 plays at that multiple of the recorded rate; rate = 0 plays as fast as the pipeline keeps
up: at most `max_in_flight` frames published and not yet answered by a Diagnosis (a frame with
no answer after `answer_timeout_s` counts as lost and is reported). Output QoS is RELIABLE with a
deep queue, so nothing is dropped unnoticed. Frames are published as their recorded CDR bytes,
so every Diagnosis carries the bag frame's own header stamp. The node exits when the bag ends
(or breaks: a truncated bag is reported and whatever was replayed stays recorded).

Start handshake: the first frame goes out only when this player's image publisher has matched
`image_subscribers` subscriptions (the inference node, and the findings node, which keeps the
frames of an alert: unmatched, it lost the first seconds of a session) AND the inference node
reports on /diagnostics that ITS
diagnosis publisher has matched `diagnosis_subscribers` subscriptions (this player and the
recorder): a graph entry alone does not mean the recorder will receive the first diagnoses.
At the end it waits until the recorder reports as many diagnosis rows as were answered, and
writes the accounting (published, answered, the node's rejected/dropped counts, recorded) to
`accounting` as JSON, so a replay never ends on a silent subset.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from skin_screening_msgs.msg import Diagnosis
from std_msgs.msg import Empty

from ..core.bags import BagError, frames_of, inspect_bag
from ..core.frames import stamp_to_ns
from .common import REPLAY_END_TOPIC, alert_qos, descriptor, init_ros


class BagPlayerNode(Node):
    def __init__(self, **kwargs):
        super().__init__('bag_player', **kwargs)
        p = self.declare_parameter
        p('bag', '', descriptor('rosbag2 folder (mcap or sqlite3).', read_only=True))
        p(
            'topic',
            '',
            descriptor(
                'Image or CompressedImage topic of the bag (empty: its only image topic; '
                'a bag with several is refused with the list).',
                read_only=True,
            ),
        )
        p(
            'rate',
            1.0,
            descriptor(
                'Multiple of the recorded rate; 0 = as fast as answered.',
                read_only=True,
                float_range=(0.0, 100.0),
            ),
        )
        p(
            'max_in_flight',
            2,
            descriptor(
                'Unanswered frames allowed with rate 0.', read_only=True, int_range=(1, 1000)
            ),
        )
        p(
            'answer_timeout_s',
            5.0,
            descriptor(
                'Seconds before an unanswered frame is lost.',
                read_only=True,
                float_range=(0.1, 600.0),
            ),
        )
        p(
            'start_delay_s',
            0.0,
            descriptor(
                'Extra wait once the pipeline is connected (the handshake needs none).',
                read_only=True,
                float_range=(0.0, 60.0),
            ),
        )
        p(
            'wait_s',
            120.0,
            descriptor(
                'Wait at most this long for an image subscriber and for diagnosis subscribers '
                '(this player and a recorder) before the first frame.',
                read_only=True,
                float_range=(0.0, 3600.0),
            ),
        )
        p(
            'diagnosis_subscribers',
            2,
            descriptor(
                'Subscribers of diagnosis to wait for, this player included (2 = a recorder too).',
                read_only=True,
                int_range=(1, 100),
            ),
        )
        p(
            'image_subscribers',
            1,
            descriptor(
                'Subscribers of the image topic to wait for (the inference node; 2 = a '
                'findings node too).',
                read_only=True,
                int_range=(1, 100),
            ),
        )
        p(
            'end_subscribers',
            0,
            descriptor(
                'Nodes (exit_with_replay) to tell of the end of the replay: the announcement '
                'waits until that many have matched (up to 10 s).',
                read_only=True,
                int_range=(0, 100),
            ),
        )
        p('progress', True, descriptor('Progress bar on stderr.', read_only=True))
        p(
            'publish_log',
            '',
            descriptor(
                'CSV of (stamp_ns, published_ns, answered) per frame, for replay latency and '
                'accounting (empty: none).',
                read_only=True,
            ),
        )
        p(
            'accounting',
            '',
            descriptor(
                'JSON file for the end-to-end counts of this replay (empty: none).',
                read_only=True,
            ),
        )
        gp = self.get_parameter
        self.bag = gp('bag').value
        self.info = inspect_bag(self.bag, gp('topic').value or None)
        self.total = self.info.topic.count
        if self.info.damage:
            self.get_logger().warning(f'{self.info.damage_note}: replaying those')
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        # CompressedImage frames go to image_raw/compressed (image_transport's name): the
        # inference node subscribes there with compressed:=true
        msgtype = CompressedImage if self.info.compressed else Image
        out = 'image_raw/compressed' if self.info.compressed else 'image_raw'
        self._pub = self.create_publisher(msgtype, out, qos)
        self._pending: dict[int, float] = {}
        self._log: list[tuple[int, int]] = []
        self._answered_stamps: set[int] = set()
        self._status: dict[str, dict[str, str]] = {}  # 'inference'/'recorder' -> latest values
        self._answered = threading.Condition()
        self.published = self.answered = self.lost = 0
        self.error = ''
        self.create_subscription(
            Diagnosis,
            'diagnosis',
            self._on_diagnosis,
            QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE),
        )
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_status, 50)
        self._end_pub = self.create_publisher(Empty, REPLAY_END_TOPIC, alert_qos())
        self.done = threading.Event()
        threading.Thread(target=self._play_safely, daemon=True).start()

    def _play_safely(self) -> None:
        """Play; whatever goes wrong ends the node with an error instead of a silent hang."""
        try:
            self._play()
        except Exception as exc:  # noqa: BLE001 - reported and turned into the exit code
            self.error = f'replay failed: {type(exc).__name__}: {exc}'
            self.get_logger().error(self.error)
        finally:
            self._announce_end()
            self.done.set()

    def _on_diagnosis(self, msg: Diagnosis) -> None:
        with self._answered:
            stamp = stamp_to_ns(msg.header.stamp)
            if self._pending.pop(stamp, None) is not None:
                self.answered += 1
                self._answered_stamps.add(stamp)
            self._answered.notify_all()

    def _on_status(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            kind = status.name.rsplit(': ', 1)[-1]
            values = {kv.key: kv.value for kv in status.values}
            mine = values.get('namespace', self.get_namespace()) == self.get_namespace()
            if kind in ('inference', 'recorder') and mine:  # not another replay's nodes
                self._status[kind] = values

    def _status_int(self, kind: str, key: str) -> int:
        try:
            return int(self._status.get(kind, {}).get(key, -1))
        except ValueError:
            return -1

    def _connected(self) -> bool:
        """The handshake (see the module docstring)."""
        wanted = self.get_parameter('diagnosis_subscribers').value
        return (
            self._pub.get_subscription_count() >= self.get_parameter('image_subscribers').value
            and self._status_int('inference', 'diagnosis_subscribers') >= wanted
        )

    def _wait(self, predicate, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > deadline or not self.context.ok():
                return False
            time.sleep(0.02)
        return True

    def _expire(self, timeout: float) -> None:
        now = time.monotonic()
        for stamp in [s for s, t in self._pending.items() if now - t > timeout]:
            del self._pending[stamp]
            self.lost += 1

    def _play(self) -> None:
        gp = self.get_parameter
        rate, window = gp('rate').value, gp('max_in_flight').value
        timeout = gp('answer_timeout_s').value
        if not self._wait(self._connected, gp('wait_s').value):
            self.get_logger().warning(
                f'pipeline not fully connected after {gp("wait_s").value:.0f} s (image '
                f'subscribers {self._pub.get_subscription_count()}, diagnosis subscribers '
                f'matched by the inference node '
                f'{self._status_int("inference", "diagnosis_subscribers")}); replaying anyway'
            )
        time.sleep(gp('start_delay_s').value)
        bar = None
        if gp('progress').value:
            from tqdm import tqdm

            bar = tqdm(total=self.total, desc='replay', unit='frame', file=sys.stderr)
        first_log = start = None
        try:
            for frame in frames_of(self.info):
                if rate > 0:
                    first_log = first_log if first_log is not None else frame.log_time_ns
                    start = start if start is not None else time.monotonic()
                    due = start + (frame.log_time_ns - first_log) / 1e9 / rate
                    time.sleep(max(0.0, due - time.monotonic()))
                else:
                    with self._answered:
                        while len(self._pending) >= window:
                            self._answered.wait(0.05)
                            self._expire(timeout)
                with self._answered:
                    self._pending[frame.stamp_ns] = time.monotonic()
                sent_ns = time.time_ns()  # before publish(): a Diagnosis can arrive during it
                self._pub.publish(frame.raw)
                self._log.append((frame.stamp_ns, sent_ns))
                self.published += 1
                if bar is not None:
                    bar.update(1)
        except BagError as exc:
            self.error = str(exc)
            self.get_logger().error(self.error)
        deadline = time.monotonic() + timeout
        with self._answered:
            while self._pending and time.monotonic() < deadline:
                self._answered.wait(0.05)
            self._expire(0.0)
        if bar is not None:
            bar.close()
        if gp('diagnosis_subscribers').value >= 2:  # a recorder: wait for its rows
            self._wait(
                lambda: self._status_int('recorder', 'diagnoses_rows') >= self.answered, timeout
            )
        self._wait(lambda: self._node_accounted() >= self.published, min(timeout, 2.0))
        self._write_logs()
        self.get_logger().info(
            f'replay finished: {self.published}/{self.total} frames published, '
            f'{self.answered} answered, {self.lost} lost'
            + (f'; {self.error}' if self.error else '')
        )

    def _announce_end(self) -> None:
        """Tell the replay's nodes (exit_with_replay) that it is over; wait until they have it."""
        from rclpy.duration import Duration

        if not self.context.ok():
            return  # shutting down (Ctrl-C): the nodes are stopping anyway
        wanted = self.get_parameter('end_subscribers').value
        if not self._wait(lambda: self._end_pub.get_subscription_count() >= wanted, 10.0):
            self.get_logger().warning(
                f'only {self._end_pub.get_subscription_count()} of {wanted} nodes listen for '
                'the end of the replay: the others must be stopped'
            )
        try:
            self._end_pub.publish(Empty())
            self._end_pub.wait_for_all_acked(Duration(seconds=5.0))
        except Exception:  # noqa: BLE001 - node destroyed meanwhile: nobody left to tell
            pass

    def _node_accounted(self) -> int:
        """Frames the inference node has answered, rejected or dropped (its own counts)."""
        keys = ('frames_processed', 'frames_rejected', 'frames_dropped')
        return sum(max(0, self._status_int('inference', k)) for k in keys)

    def _write_logs(self) -> None:
        gp = self.get_parameter
        if gp('publish_log').value:
            with open(gp('publish_log').value, 'w') as f:
                f.write('stamp_ns,published_ns,answered\n')
                f.writelines(
                    f'{stamp},{sent},{int(stamp in self._answered_stamps)}\n'
                    for stamp, sent in self._log
                )
        if gp('accounting').value:
            node = self._status.get('inference', {})
            counts = {
                'bag_frames': self.total if self.info.expected is None else self.info.expected,
                'bag_damage': self.info.damage_note,
                'published': self.published,
                'answered': self.answered,
                'lost': self.lost,
                'node_received': self._status_int('inference', 'frames_received'),
                'node_rejected': self._status_int('inference', 'frames_rejected'),
                'node_dropped': self._status_int('inference', 'frames_dropped'),
                'recorder_rows': self._status_int('recorder', 'diagnoses_rows'),
                'bag_error': self.error,
                'node_status': node,
            }
            with open(gp('accounting').value, 'w') as f:
                json.dump(counts, f, indent=2)


def main(args=None) -> None:
    init_ros(args)
    node = None
    code = 0
    try:
        node = BagPlayerNode()
        while rclpy.ok() and not node.done.is_set():
            rclpy.spin_once(node, timeout_sec=0.1)
        code = 1 if node.error else 0
    except BagError as exc:
        rclpy.logging.get_logger('bag_player').fatal(str(exc))
        code = 2
    except KeyboardInterrupt:
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    sys.exit(code)


if __name__ == '__main__':
    main()
