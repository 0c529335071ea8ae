"""Wearable sessions generated from held-out images: passes over lesions, revisits, skin between.

A worn camera does not see one still per lesion: it passes over a lesion for a second or two
(30 frames a second) while drifting, zooming, turning and changing exposure, crosses plain skin
to the next lesion, and comes back to some lesions later in the session. This generator makes
such sessions from labelled images, with ground truth per frame: the lesion id (the dataset's
lesion group; '' for skin-only frames) and the pass it belongs to. A revisit of a lesion with
several images shows another of its images (another acquisition), else the same image seen
along another path. Frames are generated one at a time (a long session never sits in memory).

    from training.wearable import PassPlan, session_frames
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from skin_screening.core.bags import LabelledFrame

SKIN = 'skin'  # label of a skin-only frame (y 0, group '')


@dataclass(frozen=True)
class PassPlan:
    """How a session moves: seconds per pass and between lesions, share of revisits."""

    rate_hz: float = 30.0
    dwell_s: tuple[float, float] = (1.0, 2.5)  # one pass over a lesion
    skin_s: tuple[float, float] = (0.3, 1.0)  # plain skin between two passes
    revisits: float = 0.35  # share of passes that come back to a lesion already seen
    zoom: tuple[float, float] = (1.0, 1.5)  # magnification drifts within this range
    drift_px: float = 2.5  # per-frame camera drift (standard deviation, pixels)
    turn_deg: float = 0.6  # per-frame rotation drift (standard deviation)
    exposure: tuple[float, float] = (0.8, 1.2)  # gain drifts within this range
    blur_above_px: float = 6.0  # a frame moving faster than this is motion-blurred
    size: tuple[int, int] = (600, 450)  # frame width, height


@dataclass(frozen=True)
class Visit:
    lesion: str  # the dataset's lesion group
    image: int  # index into the session's images
    revisit: bool


def plan_visits(groups: Sequence[str], passes: int, plan: PassPlan, rng) -> list[Visit]:
    """Order of `passes` passes over the lesions of `groups` (one entry per image): first visits
    of distinct lesions, with revisits (another image of the lesion where it has one) inserted
    at random later positions."""
    by: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by.setdefault(g, []).append(i)
    lesions = list(rng.permutation(sorted(by)))
    n_revisit = int(round(passes * plan.revisits))
    first = lesions[: max(1, passes - n_revisit)]
    visits = [Visit(g, by[g][0], False) for g in first]
    for _ in range(passes - len(first)):
        g = first[int(rng.integers(len(first)))]
        seen = [i for i, v in enumerate(visits) if v.lesion == g]
        at = int(rng.integers(seen[0] + 1, len(visits) + 1))
        shown = sum(v.lesion == g for v in visits)
        visits.insert(at, Visit(g, by[g][shown % len(by[g])], True))
    return visits


def _warp(rgb: np.ndarray, centre, zoom: float, angle: float, size) -> np.ndarray:
    import cv2

    w, h = size
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, zoom)
    m[:, 2] += (w / 2 - centre[0], h / 2 - centre[1])
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _fit(rgb: np.ndarray, size) -> np.ndarray:
    import cv2

    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) if rgb.shape[1::-1] != size else rgb


def pass_frames(rgb: np.ndarray, n: int, plan: PassPlan, rng) -> Iterator[np.ndarray]:
    """`n` frames of one pass: a smooth random path in position, zoom, angle and exposure,
    motion blur where the camera moves fast."""
    import cv2

    rgb = _fit(rgb, plan.size)
    w, h = plan.size
    centre = np.array([w / 2, h / 2]) + rng.normal(0, [w / 20, h / 20])
    zoom, angle = rng.uniform(*plan.zoom), rng.uniform(-180, 180)
    gain, velocity = rng.uniform(*plan.exposure), np.zeros(2)
    for _ in range(n):
        velocity = 0.8 * velocity + rng.normal(0, plan.drift_px, 2)
        centre = np.clip(centre + velocity, [w / 3, h / 3], [2 * w / 3, 2 * h / 3])
        zoom = float(np.clip(zoom + rng.normal(0, 0.01), *plan.zoom))
        angle += rng.normal(0, plan.turn_deg)
        gain = float(np.clip(gain + rng.normal(0, 0.01), *plan.exposure))
        frame = _warp(rgb, centre, zoom, angle, plan.size).astype(np.float32) * gain
        speed = float(np.hypot(*velocity))
        if speed > plan.blur_above_px:
            length = int(min(15, round(speed)))
            kernel = np.zeros((length, length), np.float32)
            kernel[length // 2] = 1.0 / length
            rot = cv2.getRotationMatrix2D(
                (length / 2 - 0.5, length / 2 - 0.5), np.degrees(np.arctan2(*velocity[::-1])), 1
            )
            kernel = cv2.warpAffine(kernel, rot, (length, length))
            frame = cv2.filter2D(frame, -1, kernel / max(kernel.sum(), 1e-6))
        yield np.clip(frame, 0, 255).astype(np.uint8)


def skin_frames(rgb: np.ndarray, n: int, plan: PassPlan, rng) -> Iterator[np.ndarray]:
    """`n` frames of plain skin on the way to the next lesion: a corner of the image (HAM10000
    centres the lesion) magnified to the frame, sliding as the camera moves."""
    w, h = plan.size
    rgb = _fit(rgb, plan.size)
    corner = np.array([w * rng.choice([0.1, 0.9]), h * rng.choice([0.1, 0.9])])
    step = rng.normal(0, 3, 2)
    for i in range(n):
        yield _warp(rgb, corner + i * step, 3.0, 0.0, plan.size)


def session_frames(
    images: Sequence[LabelledFrame], passes: int, plan: PassPlan = PassPlan(), seed: int = 0
) -> Iterator[tuple[LabelledFrame, int]]:
    """The frames of one session and the pass each belongs to (-1 for skin-only frames): each
    LabelledFrame keeps its image's label and lesion group; skin frames are labelled SKIN with
    an empty group."""
    rng = np.random.default_rng(seed)
    visits = plan_visits([im.group_id for im in images], passes, plan, rng)
    for k, visit in enumerate(visits):
        image = images[visit.image]
        n_skin = int(round(rng.uniform(*plan.skin_s) * plan.rate_hz))
        for rgb in skin_frames(image.rgb, n_skin, plan, rng):
            yield LabelledFrame(rgb, 0, SKIN, image.image_id, ''), -1
        n = int(round(rng.uniform(*plan.dwell_s) * plan.rate_hz))
        for rgb in pass_frames(image.rgb, n, plan, rng):
            yield LabelledFrame(rgb, image.y, image.label, image.image_id, image.group_id), k
