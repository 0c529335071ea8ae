"""Camera-like views: what a wearable's ordinary photograph does to a lesion that dermoscopy
does not. Each view draws, from a seeded generator, an off-centre reframing at another scale,
then defocus or motion blur, an exposure and white-balance shift and JPEG compression (each
with a probability), then one of the 8 dihedral orientations. Applied to every training image
and cached as extra views beside the dihedral ones (training/features.py), so the recipe trains
on them at the cost of the cache alone.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
from skin_screening.core.preprocess import MIN_SIDE, Preprocessing, dihedral, resize


@dataclass(frozen=True)
class CameraAugment:
    """Ranges of each camera effect (stored in the features cache key and the run config)."""

    scale: tuple[float, float] = (0.55, 1.0)  # side of the reframed square / the short side
    defocus: float = 0.5  # probability of a Gaussian defocus blur ...
    defocus_sigma: tuple[float, float] = (0.6, 2.2)  # ... of this sigma, in 224-pixel units
    motion: float = 0.3  # probability of a linear motion blur ...
    motion_length: tuple[int, int] = (3, 11)  # ... this many pixels long, any direction
    exposure: tuple[float, float] = (0.6, 1.45)  # gain on linear-ish intensity
    gamma: tuple[float, float] = (0.8, 1.25)
    white_balance: float = 0.12  # per-channel gain in 1 +- this
    jpeg: float = 0.6  # probability of JPEG compression ...
    jpeg_quality: tuple[int, int] = (30, 85)

    def to_dict(self) -> dict:
        return asdict(self)


def reframe(image: np.ndarray, rng: np.random.Generator, scale: tuple[float, float]):
    """A square of `scale` x the short side, anywhere in the image (off-centre framing)."""
    h, w = image.shape[:2]
    side = min(min(h, w), max(MIN_SIDE, int(min(h, w) * rng.uniform(*scale))))
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    return image[top : top + side, left : left + side]


def motion_kernel(length: int, angle: float) -> np.ndarray:
    kernel = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    for t in np.linspace(-c, c, 4 * length):
        kernel[int(round(c + t * np.sin(angle))), int(round(c + t * np.cos(angle)))] = 1
    return kernel / kernel.sum()


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='JPEG', quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert('RGB'))


def camera_view(
    image: np.ndarray, spec: Preprocessing, rng: np.random.Generator, aug: CameraAugment
) -> np.ndarray:
    """A uint8 RGB image -> one camera-like uint8 crop of the model's input size."""
    import cv2

    crop = resize(reframe(image, rng, aug.scale), spec).astype(np.float32)
    if rng.random() < aug.defocus:
        crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(*aug.defocus_sigma))
    if rng.random() < aug.motion:
        kernel = motion_kernel(int(rng.integers(*aug.motion_length)), rng.uniform(0, np.pi))
        crop = cv2.filter2D(crop, -1, kernel, borderType=cv2.BORDER_REFLECT)
    balance = rng.uniform(1 - aug.white_balance, 1 + aug.white_balance, 3)
    gains = rng.uniform(*aug.exposure) * balance
    crop = 255.0 * np.clip(crop / 255.0 * gains, 0, 1) ** rng.uniform(*aug.gamma)
    crop = np.clip(np.round(crop), 0, 255).astype(np.uint8)
    if rng.random() < aug.jpeg:
        crop = jpeg(crop, int(rng.integers(*aug.jpeg_quality)))
    return dihedral(crop, int(rng.integers(0, 8)))


def camera_views(
    image: np.ndarray, spec: Preprocessing, views: int, seed: int, aug: CameraAugment
) -> list[np.ndarray]:
    """`views` camera-like crops of one image, reproducible from `seed` (the image's own)."""
    rng = np.random.default_rng(seed)
    return [camera_view(image, spec, rng, aug) for _ in range(views)]
