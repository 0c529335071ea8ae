"""Where camera frames come from: a V4L2/GStreamer device, a video file or an image folder.

`open_source(spec)` returns a FrameSource whose read() gives an RGB frame, or raises
SourceError when the device disappeared or stopped delivering (the camera node reports it and
reopens; it does not die).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .preprocess import FrameError, load_rgb

IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp'}


class SourceError(RuntimeError):
    pass


class FolderSource:
    """Images of a folder in name order, looping when `loop`."""

    def __init__(self, folder: Path, loop: bool = True):
        self.paths = sorted(
            p for p in Path(folder).rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self.paths:
            raise SourceError(f'no images in {folder}')
        self.loop, self._next = loop, 0
        self.current: Path | None = None

    def read(self) -> np.ndarray:
        if self._next >= len(self.paths):
            if not self.loop:
                raise StopIteration
            self._next = 0
        self.current = self.paths[self._next]
        self._next += 1
        try:
            return load_rgb(self.current)
        except FrameError as exc:
            raise SourceError(str(exc)) from exc

    def close(self) -> None:
        pass


class CaptureSource:
    """OpenCV VideoCapture: /dev/videoN, a device index, a video file or a GStreamer pipeline."""

    def __init__(self, spec: str, loop: bool = True):
        import cv2

        self.spec, self.loop = spec, loop
        if spec.startswith('gst:'):
            self._cap = cv2.VideoCapture(spec[4:], cv2.CAP_GSTREAMER)
        elif spec.isdigit():
            self._cap = cv2.VideoCapture(int(spec))
        else:
            self._cap = cv2.VideoCapture(spec)
        self._file = Path(spec).is_file()
        if not self._cap.isOpened():
            raise SourceError(f'cannot open camera source {spec!r}')

    def read(self) -> np.ndarray:
        import cv2

        ok, bgr = self._cap.read()
        if not ok and self._file and self.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        if not ok or bgr is None:
            if self._file and not self.loop:
                raise StopIteration
            raise SourceError(f'camera source {self.spec!r} stopped delivering frames')
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._cap.release()


def open_source(spec: str, loop: bool = True):
    if not spec:
        raise SourceError('no camera source given')
    if Path(spec).is_dir():
        return FolderSource(Path(spec), loop)
    return CaptureSource(spec, loop)
