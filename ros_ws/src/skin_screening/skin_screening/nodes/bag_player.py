"""Bag player node: a rosbag2's camera frames -> `image_raw`, read with rosbags (no rosbag2 here).

rate > 0 plays at that multiple of the recorded rate; rate = 0 plays as fast as the pipeline keeps
up: at most `max_in_flight` frames published and not yet answered by a Diagnosis (a frame with
no answer after `answer_timeout_s` counts as lost and is reported). Output QoS is RELIABLE with a
deep queue, so nothing is dropped unnoticed. Frames are published as their recorded CDR bytes,
so every Diagnosis carries the bag frame's own header stamp. The node exits when the bag ends
(or breaks: a truncated bag is reported and whatever was replayed stays recorded).
"""

from __future__ import annotations

import sys
import threading
import time

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from skin_screening_msgs.msg import Diagnosis

from ..core.bags import BagError, count_frames, read_frames
from .common import descriptor, stamp_to_ns


class BagPlayerNode(Node):
    def __init__(self, **kwargs):
        super().__init__('bag_player', **kwargs)
        p = self.declare_parameter
        p('bag', '', descriptor('rosbag2 folder (mcap or sqlite3).', read_only=True))
        p(
            'topic',
            '',
            descriptor('Image topic in the bag (empty: the first image topic).', read_only=True),
        )
        p('compressed', False, descriptor('Prefer the CompressedImage topic.', read_only=True))
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
            1.0,
            descriptor(
                'Wait for subscribers before the first frame.',
                read_only=True,
                float_range=(0.0, 60.0),
            ),
        )
        p('progress', True, descriptor('Progress bar on stderr.', read_only=True))
        gp = self.get_parameter
        self.bag = gp('bag').value
        self.total = count_frames(self.bag, gp('topic').value or None)
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        msgtype = CompressedImage if gp('compressed').value else Image
        out = 'image_raw/compressed' if gp('compressed').value else 'image_raw'
        self._pub = self.create_publisher(msgtype, out, qos)
        self._pending: dict[int, float] = {}
        self._answered = threading.Condition()
        self.published = self.answered = self.lost = 0
        self.error = ''
        self.create_subscription(
            Diagnosis,
            'diagnosis',
            self._on_diagnosis,
            QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE),
        )
        self.done = threading.Event()
        threading.Thread(target=self._play, daemon=True).start()

    def _on_diagnosis(self, msg: Diagnosis) -> None:
        with self._answered:
            if self._pending.pop(stamp_to_ns(msg.header.stamp), None) is not None:
                self.answered += 1
            self._answered.notify_all()

    def _expire(self, timeout: float) -> None:
        now = time.monotonic()
        for stamp in [s for s, t in self._pending.items() if now - t > timeout]:
            del self._pending[stamp]
            self.lost += 1

    def _play(self) -> None:
        gp = self.get_parameter
        rate, window = gp('rate').value, gp('max_in_flight').value
        timeout = gp('answer_timeout_s').value
        time.sleep(gp('start_delay_s').value)
        bar = None
        if gp('progress').value:
            from tqdm import tqdm

            bar = tqdm(total=self.total, desc='replay', unit='frame', file=sys.stderr)
        first_log = start = None
        try:
            for frame in read_frames(self.bag, gp('topic').value or None, gp('compressed').value):
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
                self._pub.publish(frame.raw)
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
        self.get_logger().info(
            f'replay finished: {self.published}/{self.total} frames published, '
            f'{self.answered} answered, {self.lost} lost'
            + (f'; {self.error}' if self.error else '')
        )
        self.done.set()


def main(args=None) -> None:
    rclpy.init(args=args)
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
