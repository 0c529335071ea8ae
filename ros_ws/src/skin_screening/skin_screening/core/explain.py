"""Class activation maps: the engine's 'cam' output (N x K x h x w, logit units) as overlays.

The map is the classification head applied at every position of the final feature map, so
its spatial mean is the logit: it needs no gradients and runs behind any engine. It covers the
preprocessed crop (the model's view), so overlays are drawn on that crop.
"""

from __future__ import annotations

import numpy as np

from .postprocess import DecisionRule

CAM_OUTPUT = 'cam'


def cam_maps(cam: np.ndarray, rule: DecisionRule) -> np.ndarray:
    """N x K x h x w logit maps -> N x h x w in [0, 1]: the calibrated probability per place."""
    cam = np.asarray(cam, np.float64)
    if cam.ndim != 4:
        raise ValueError(f'expected a CAM of shape N x K x h x w, got {cam.shape}')
    return rule.calibrate(cam).mean(axis=1)


def overlay(crop: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 crop + h x w map in [0, 1] -> RGB uint8 with a JET heat map blended in."""
    import cv2

    size = (crop.shape[1], crop.shape[0])
    up = cv2.resize(np.clip(heat, 0, 1).astype(np.float32), size, interpolation=cv2.INTER_CUBIC)
    colour = cv2.applyColorMap(np.uint8(np.clip(up, 0, 1) * 255), cv2.COLORMAP_JET)[:, :, ::-1]
    return cv2.addWeighted(crop, 1 - alpha, colour, alpha, 0)
