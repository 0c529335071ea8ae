"""A camera the model has never seen, simulated for judging the gate's camera fitting.

A fixed transform of an image, as a cheap wearable's sensor in indoor light would give it: a warm
colour cast, vignetting, sensor noise, the camera's oversharpening (which amplifies that noise)
and JPEG. Unlike training/camera.py's random views it is ONE fixed camera, and nothing else
uses it: not training, not the gate's reference or probe sets. On the shipped model's held-out
images it moves the gate's embedding distance (median 0.48 -> 0.96 of the bound, FP32), so about
a third of its frames are 'not a lesion image' before the gate is fitted to it.

    benchmarks/new_camera.py   (flagged shares before/after fitting, REFER counts)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SimulatedCamera:
    cast: tuple[float, float, float] = (1.15, 0.95, 0.70)  # per-channel gain (R, G, B)
    vignette: float = 0.45  # gain left in the corners
    noise: float = 16.0  # sensor noise, standard deviation in 8-bit levels
    sharpen: float = 1.5  # unsharp-mask amount (Gaussian sigma 2)
    jpeg_quality: int = 60
    seed: int = 0  # the noise of frame i is drawn from (seed, i): a bag is reproducible

    def __call__(self, rgb: np.ndarray, index: int = 0) -> np.ndarray:
        import cv2

        from .camera import jpeg

        h, w = rgb.shape[:2]
        x = rgb.astype(np.float32) * np.asarray(self.cast, np.float32)
        yy, xx = np.mgrid[0:h, 0:w]
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        x *= (1 - (1 - self.vignette) * np.clip(r2 / 2, 0, 1))[..., None]
        x += np.random.default_rng((self.seed, index)).normal(0, self.noise, x.shape)
        x = np.clip(x, 0, 255).astype(np.uint8)
        x = cv2.addWeighted(x, 1 + self.sharpen, cv2.GaussianBlur(x, (0, 0), 2), -self.sharpen, 0)
        return jpeg(x, self.jpeg_quality)


def camera_frames(paths: Sequence[str | Path], camera: SimulatedCamera) -> Iterable[np.ndarray]:
    from skin_screening.core.preprocess import load_rgb

    for i, path in enumerate(paths):
        yield camera(load_rgb(path), i)


def recording_rows(model_dir: str | Path, n: int, seed: int = 0) -> list[dict]:
    """`n` split-file rows standing in for a wearer's recording: images of the release model's
    training folds outside its inner validation (no held-out image, none that chose its
    calibration), in random order (a session visits sites in any order)."""
    from .data import release_validation, training_fold_rows

    validation = set(release_validation(model_dir).ids)
    rows = [
        r for r in training_fold_rows(model_dir) or [] if Path(r['path']).stem not in validation
    ]
    return [rows[i] for i in np.random.default_rng(seed).choice(len(rows), n, replace=False)]


def write_camera_bag(
    path: str | Path, rows: Sequence[dict], camera: SimulatedCamera, rate_hz: float = 10.0
) -> int:
    """A bag of `rows` (split-file rows: path, y, label, group) seen through `camera`, one
    frame per image, with ground truth (a labelled recording of that camera)."""
    from skin_screening.core.bags import LabelledFrame, write_bag

    frames = (
        LabelledFrame(rgb, int(r['y']), r['label'], Path(r['path']).stem, r['group'])
        for r, rgb in zip(rows, camera_frames([r['path'] for r in rows], camera))
    )
    return write_bag(path, frames, rate_hz=rate_hz)
