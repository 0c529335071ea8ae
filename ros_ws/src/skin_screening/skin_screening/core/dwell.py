"""Frames as a worn camera sees them: each lesion for a while, not one still per lesion.

A wearable dwells on a lesion for seconds (30 frames a second), with small movements and light
changes. A bag of such frames is what raises alerts (an alert needs a window of frames), so it
drives the findings node and the session report in demos and tests; evaluation bags keep one
frame per image.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from .bags import LabelledFrame


def dwell_frames(
    images: Sequence[LabelledFrame], frames_each: int, seed: int = 0, shift_px: int = 6
) -> Iterator[LabelledFrame]:
    """`frames_each` consecutive frames of each image: shifted by up to `shift_px` pixels and
    brightened or darkened by up to 8 %, the label and ids of the image kept (generated one at
    a time: a long session never sits in memory)."""
    rng = np.random.default_rng(seed)
    for image in images:
        h, w = image.rgb.shape[:2]
        for _ in range(frames_each):
            dx, dy = rng.integers(-shift_px, shift_px + 1, 2)
            moved = cv2.warpAffine(
                image.rgb,
                np.float32([[1, 0, dx], [0, 1, dy]]),
                (w, h),
                borderMode=cv2.BORDER_REFLECT,
            )
            gain = 1.0 + rng.uniform(-0.08, 0.08)
            rgb = np.clip(moved.astype(np.float32) * gain, 0, 255).astype(np.uint8)
            yield LabelledFrame(rgb, image.y, image.label, image.image_id, image.group_id)
