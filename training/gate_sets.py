"""Images the unassessable-frame gate is fitted and judged on, as 224 crops of the model's view.

Assessable (lesion images): HAM10000 dermoscopy (training folds, the release model's validation,
its held-out fold), full-resolution dermoscopy originals, clinical photographs (PAD-UFES-20, by
patient). Not assessable: real photographs that are not skin lesions (scikit-image's sample
data, whole and cropped), synthetic bad frames (black, grey, white, noise), and lesion images
made bad (downscaled and blurred, underexposed, overexposed).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from skin_screening.core.preprocess import Preprocessing, load_rgb, resize

FRAME = (480, 640)  # a camera frame, rows x columns
SKIMAGE_PHOTOS = (
    'astronaut',
    'brick',
    'camera',
    'cat',
    'chelsea',
    'clock',
    'coffee',
    'coins',
    'colorwheel',
    'grass',
    'gravel',
    'horse',
    'hubble_deep_field',
    'immunohistochemistry',
    'logo',
    'moon',
    'page',
    'retina',
    'rocket',
    'text',
    'cell',
    'microaneurysms',
    'checkerboard',
    'shepp_logan_phantom',
)


def crops(images, spec: Preprocessing) -> np.ndarray:
    return np.stack([resize(im, spec) for im in images])


def as_rgb(image) -> np.ndarray:
    """Any scikit-image sample (bool, float, grey, RGBA) -> RGB uint8."""
    im = np.asarray(image)
    if im.dtype != np.uint8:
        im = im.astype(np.float64)
        im = (255 * (im - im.min()) / (np.ptp(im) or 1.0)).astype(np.uint8)
    if im.ndim == 2:
        im = np.stack([im] * 3, axis=-1)
    return np.ascontiguousarray(im[..., :3])


def non_lesion_photos(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """-> (whole photographs, 3 random crops of 40-70 % of each side per photograph)."""
    try:
        import skimage.data as samples
    except ImportError as exc:
        raise ImportError('the gate evaluation needs scikit-image (uv sync)') from exc
    photos = [as_rgb(getattr(samples, name)()) for name in SKIMAGE_PHOTOS]
    photos += [as_rgb(im) for im in samples.stereo_motorcycle()[:2]]
    rng = np.random.default_rng(seed)
    parts = []
    for p in photos:
        h, w = p.shape[:2]
        for _ in range(3):
            ch, cw = int(h * rng.uniform(0.4, 0.7)), int(w * rng.uniform(0.4, 0.7))
            y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            parts.append(p[y : y + ch, x : x + cw])
    return photos, parts


def synthetic_frames(seed: int = 0) -> list[np.ndarray]:
    """Black, near-black, grey, near-white and white frames, uniform and Gaussian noise."""
    rng = np.random.default_rng(seed)
    frames = [np.full((*FRAME, 3), v, np.uint8) for v in (0, 8, 128, 247, 255)]
    frames += [rng.integers(0, 256, (*FRAME, 3), dtype=np.uint8) for _ in range(10)]
    frames += [
        np.clip(rng.normal(128, 40, (*FRAME, 3)), 0, 255).astype(np.uint8) for _ in range(5)
    ]
    return frames


def spoiled(images: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Lesion images made unassessable: downscaled 4x and blurred, underexposed (x0.08),
    overexposed (x3 + 120, clipped)."""
    import cv2

    def blur(im):
        h, w = im.shape[:2]
        small = cv2.resize(im, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(cv2.resize(small, (w, h)), (0, 0), 6)

    half = len(images) // 2
    return {
        'blurred': [blur(im) for im in images],
        'underexposed': [(im * 0.08).astype(np.uint8) for im in images[:half]],
        'overexposed': [
            np.clip(im.astype(np.int32) * 3 + 120, 0, 255).astype(np.uint8) for im in images[half:]
        ],
    }


def labelled_folder(root: str | Path, group_key: str) -> tuple[list[Path], np.ndarray]:
    """(image paths, group per image) of a dataset folder with labels.csv (column image)."""
    root = Path(root)
    with (root / 'labels.csv').open(newline='') as f:
        rows = list(csv.DictReader(f))
    return [root / r['image'] for r in rows], np.array([r[group_key] for r in rows])


def load_crops(paths, spec: Preprocessing) -> np.ndarray:
    return crops([load_rgb(p) for p in paths], spec)
