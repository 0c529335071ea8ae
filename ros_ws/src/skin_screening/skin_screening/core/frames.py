"""sensor_msgs/Image and CompressedImage <-> RGB arrays, validated (one code path, no cv_bridge).

Works on any object with the message's fields (rclpy messages, rosbags messages), so the node,
the bag tools and the tests share it. Colour conversion is rosbags-image's.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .preprocess import FrameError, check_frame

GREY_PREFIXES = ('mono', 'bayer', '8UC1', '16UC1', '32FC1')


def stamp_to_ns(stamp: Any) -> int:
    """A builtin_interfaces/Time (rclpy or rosbags message) in nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _decode_compressed(msg: Any) -> np.ndarray:
    import cv2

    data = np.frombuffer(bytes(msg.data), np.uint8)
    if data.size == 0:
        raise FrameError('empty CompressedImage')
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise FrameError(f'CompressedImage ({msg.format or "unknown format"}) does not decode')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def message_to_rgb(msg: Any) -> np.ndarray:
    """Image/CompressedImage -> RGB uint8 HxWx3; FrameError with the reason otherwise."""
    if hasattr(msg, 'format'):
        return check_frame(_decode_compressed(msg))
    from rosbags.image.image import (
        ImageConversionError,
        ImageFormatError,
        convert_color,
        to_cvtype,
    )

    encoding = msg.encoding
    if not encoding or encoding.startswith(GREY_PREFIXES):
        raise FrameError(f'encoding {encoding!r} is not a colour image (need rgb8, bgr8, ...)')
    try:
        _, _, typestr, channels = to_cvtype(encoding)
    except ImageFormatError as exc:
        raise FrameError(f'unsupported encoding {encoding!r}') from exc
    height, width = int(msg.height), int(msg.width)
    data = bytes(msg.data) if not isinstance(msg.data, (bytes, bytearray)) else msg.data
    if height == 0 or width == 0 or len(data) == 0:
        raise FrameError(f'empty image ({width}x{height}, {len(data)} bytes)')
    dtype = np.dtype(typestr)
    if dtype.kind != 'u':
        # Float (32FC3, 64FC3, ...) and signed images have no defined 0..255 colour scale: a cast
        # would turn a 0..1 image (or NaN) into a confident answer about a black frame.
        raise FrameError(
            f'encoding {encoding!r} has {dtype} pixels with no defined colour scale '
            '(need unsigned 8- or 16-bit colour: rgb8, bgr8, rgb16, ...)'
        )
    row = width * channels * dtype.itemsize if channels > 0 else 0
    step = int(msg.step) or row
    if step < row or len(data) != step * height:
        raise FrameError(
            f'{encoding} {width}x{height}: {len(data)} bytes do not match step {step} x height '
            f'{height} (row needs {row} bytes)'
        )
    rows = np.frombuffer(data, np.uint8).reshape(height, step)[:, :row]
    pixels = np.ascontiguousarray(rows).view(dtype)
    if bool(msg.is_bigendian) != (sys.byteorder == 'big'):
        pixels = pixels.byteswap()
    if encoding in ('uyvy', 'yuv422', 'yuyv', 'yuv422_yuy2'):
        pixels = pixels.reshape(height, width, 2)
    else:
        pixels = pixels.reshape(height, width, channels)
    try:
        rgb = convert_color(pixels, encoding, 'rgb8')
    except (ImageConversionError, ImageFormatError) as exc:
        raise FrameError(f'cannot convert {encoding!r} to rgb8: {exc}') from exc
    return check_frame(np.ascontiguousarray(rgb))


def rgb_to_fields(rgb: np.ndarray) -> dict[str, Any]:
    """Fields of an rgb8 sensor_msgs/Image holding `rgb`."""
    rgb = np.ascontiguousarray(check_frame(rgb))
    height, width = rgb.shape[:2]
    return {
        'height': height,
        'width': width,
        'encoding': 'rgb8',
        'is_bigendian': 0,
        'step': width * 3,
        'data': rgb.tobytes(),
    }


def rgb_to_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    import cv2

    ok, buf = cv2.imencode('.jpg', rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise FrameError('JPEG encoding failed')
    return buf.tobytes()
