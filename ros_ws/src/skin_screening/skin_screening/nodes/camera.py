"""Camera node: frames from a device, video file or image folder -> sensor_msgs/Image.

Publishes `image_raw` (rgb8, sensor-data QoS) stamped at capture and, optionally,
`image_raw/compressed` (JPEG). A source that disappears or stops delivering is reported on
/diagnostics (WARN, then ERROR while it stays away) and reopened every `reopen_s` seconds.
"""

from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ..core.frames import rgb_to_fields, rgb_to_jpeg
from ..core.sources import SourceError, open_source
from ..launching import dds_message_limit
from .common import descriptor, diagnostics, run_node


class CameraNode(Node):
    def __init__(self, **kwargs):
        super().__init__('camera', **kwargs)
        p = self.declare_parameter
        p(
            'source',
            '/dev/video0',
            descriptor(
                'V4L2 device (/dev/video0 or 0), video file, image folder, or gst:<pipeline>.',
                read_only=True,
            ),
        )
        p(
            'rate_hz',
            30.0,
            descriptor('Publishing rate.', read_only=True, float_range=(0.1, 240.0)),
        )
        p('frame_id', 'wearable_camera', descriptor('frame_id of the published images.'))
        p('loop', True, descriptor('Start a file or folder over at its end.', read_only=True))
        p(
            'max_frames',
            0,
            descriptor(
                'Stop publishing after this many frames (0 = never).',
                read_only=True,
                int_range=(0, 10_000_000),
            ),
        )
        p(
            'min_subscribers',
            0,
            descriptor(
                'Hold the first frame until image_raw has this many subscribers (replays of '
                'files and folders: best-effort frames sent before discovery are lost).',
                read_only=True,
                int_range=(0, 100),
            ),
        )
        p(
            'publish_compressed',
            False,
            descriptor('Also publish image_raw/compressed (JPEG).', read_only=True),
        )
        p(
            'reopen_s',
            2.0,
            descriptor(
                'Seconds between attempts to reopen a lost source.',
                read_only=True,
                float_range=(0.1, 60.0),
            ),
        )
        gp = self.get_parameter
        self._spec = gp('source').value
        self._max = gp('max_frames').value
        self._min_subscribers = gp('min_subscribers').value
        self._raw = self.create_publisher(Image, 'image_raw', qos_profile_sensor_data)
        self._jpeg = (
            self.create_publisher(CompressedImage, 'image_raw/compressed', qos_profile_sensor_data)
            if gp('publish_compressed').value
            else None
        )
        self._diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._source, self._lost_since, self._next_reopen = None, None, 0.0
        self.published = 0
        self._problem = ''
        self._limit = dds_message_limit()
        self._oversized = ''  # the warning about frames too large for the transport, once
        self._open()
        self.create_timer(1.0 / gp('rate_hz').value, self._tick)
        self.create_timer(1.0, self._report)

    def _open(self) -> None:
        try:
            self._source = open_source(self._spec, self.get_parameter('loop').value)
            if self._lost_since is not None:
                self.get_logger().info(f'camera source {self._spec!r} is back')
            self._lost_since, self._problem = None, ''
        except SourceError as exc:
            self._lost(str(exc))

    def _lost(self, reason: str) -> None:
        if self._source is not None:
            self._source.close()
        self._source = None
        now = time.monotonic()
        self._lost_since = self._lost_since or now
        self._next_reopen = now + self.get_parameter('reopen_s').value
        self._problem = reason
        self.get_logger().warning(f'{reason}; retrying', throttle_duration_sec=10.0)

    def _tick(self) -> None:
        if self._max and self.published >= self._max:
            return
        if not self.published and self._raw.get_subscription_count() < self._min_subscribers:
            return
        if self._source is None:
            if time.monotonic() >= self._next_reopen:
                self._open()
            return
        try:
            rgb = self._source.read()
        except StopIteration:
            self._max = self.published or -1
            self.get_logger().info(f'end of {self._spec!r} after {self.published} frames')
            return
        except SourceError as exc:
            self._lost(str(exc))
            return
        header = Header(
            stamp=self.get_clock().now().to_msg(), frame_id=self.get_parameter('frame_id').value
        )
        image = Image(header=header, **rgb_to_fields(rgb))
        self._check_size(image)
        self._raw.publish(image)
        if self._jpeg is not None:
            self._jpeg.publish(
                CompressedImage(header=header, format='jpeg', data=rgb_to_jpeg(rgb))
            )
        self.published += 1

    def _check_size(self, image: Image) -> None:
        """Warn once (log and /diagnostics) when frames exceed what the transport carries: the
        middleware drops them without a word, so no subscriber would ever see one."""
        if self._oversized or self._limit is None or len(image.data) <= self._limit[0]:
            return
        limit, origin = self._limit
        self._oversized = (
            f'frames of {image.width}x{image.height} {image.encoding} are '
            f'{len(image.data) / 1e6:.1f} MB, over the {limit / 1e6:.1f} MB this transport '
            f'carries ({origin}): subscribers may never receive them; lower the camera '
            'resolution or raise the limit'
        )
        self.get_logger().warning(self._oversized)

    def _report(self) -> None:
        level, message = DiagnosticStatus.OK, 'publishing'
        if self._oversized:
            level, message = DiagnosticStatus.WARN, self._oversized
        if self._lost_since is not None:
            away = time.monotonic() - self._lost_since
            level = DiagnosticStatus.WARN if away < 5.0 else DiagnosticStatus.ERROR
            message = f'{self._problem} ({away:.0f} s ago)'
        self._diag.publish(
            diagnostics(
                self, 'camera', level, message, self._spec, {'frames_published': self.published}
            )
        )


def main(args=None) -> None:
    run_node(CameraNode, args)


if __name__ == '__main__':
    main()
