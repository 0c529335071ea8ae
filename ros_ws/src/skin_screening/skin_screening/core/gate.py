"""Unassessable frames: the ones the classifier should not judge, each with a reason.

A wearable camera sees clothing, bare skin, darkness and blur far more often than a lesion. The
classifier answers every frame (an all-black frame gets a confident 'other'), so a gate beside
it marks the frames it must not judge, as a distinct decision that never raises an alert:

- image quality, on the model's own 224 crop (before scaling): too dark (mean grey), overexposed
  (fraction of clipped pixels), blurred (variance of the Laplacian), no skin colour (mean
  Cr/Cb chroma: a grey or IR frame);
- out of distribution: the Mahalanobis distance of the frame's embedding (the engine's
  'embedding' output: the pooled activations at the model's cut layer, computed in the same
  engine call) to each reference domain (dermoscopy, clinical photographs), in units of that
  domain's bound; a frame far from every domain is 'not a lesion image'.

Every limit is chosen on validation lesion images (training/gate.py) and stored per variant
file in the model folder's gate.json (its sha256 in the card): each precision's embedding comes
through its own engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .postprocess import NOT_A_LESION

EMBEDDING_OUTPUT = 'embedding'
REASONS = ('too dark', 'overexposed', 'blurred', 'no skin colour', NOT_A_LESION)


def quality(crops: np.ndarray) -> dict[str, np.ndarray]:
    """N x S x S x 3 uint8 RGB crops -> per frame: luminance (mean grey, 0-255), clipped
    (fraction of grey pixels >= 250), sharpness (variance of the Laplacian of grey) and chroma
    (mean distance from grey in the Cr/Cb plane, at a quarter of the size). About 0.15 ms per
    224 crop here (CIELAB chroma alone cost 0.55 ms: a fifth of an INT8 engine call)."""
    import cv2

    out = {k: np.zeros(len(crops)) for k in ('luminance', 'clipped', 'sharpness', 'chroma')}
    for i, crop in enumerate(np.asarray(crops, np.uint8)):
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        out['luminance'][i] = cv2.mean(grey)[0]
        out['clipped'][i] = np.count_nonzero(grey >= 250) / grey.size
        _, std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_16S))
        out['sharpness'][i] = float(std[0, 0]) ** 2
        size = (crop.shape[1] // 4, crop.shape[0] // 4)  # colour needs no detail
        ycc = cv2.cvtColor(
            cv2.resize(crop, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2YCrCb
        )
        cr, cb = ycc[..., 1].astype(np.float32) - 128, ycc[..., 2].astype(np.float32) - 128
        out['chroma'][i] = float(np.sqrt(cr * cr + cb * cb).mean())
    return out


def _rounded(array: np.ndarray) -> list:
    """7 significant digits (float32's): a gate file a fifth of full float64 text."""
    return np.vectorize(lambda v: float(f'{v:.7g}'), otypes=[float])(array).tolist()


@dataclass(frozen=True)
class Reference:
    """One domain of assessable images: mean and inverse covariance of its embeddings, and the
    distance bound beyond which a frame is not like it."""

    domain: str
    mean: np.ndarray
    precision: np.ndarray
    bound: float

    def distance(self, embedding: np.ndarray) -> np.ndarray:
        """Mahalanobis distance in units of the bound (> 1: outside)."""
        d = np.asarray(embedding, np.float64).reshape(len(embedding), -1) - self.mean
        return np.sqrt(np.maximum(np.einsum('ij,jk,ik->i', d, self.precision, d), 0)) / self.bound

    @classmethod
    def fit(cls, domain: str, embeddings: np.ndarray, shrinkage: float = 0.2) -> Reference:
        """Mean and shrunk covariance of reference embeddings (bound set later: 1.0)."""
        x = np.asarray(embeddings, np.float64).reshape(len(embeddings), -1)
        cov = np.cov(x, rowvar=False)
        cov = (1 - shrinkage) * cov + shrinkage * np.eye(len(cov)) * np.trace(cov) / len(cov)
        return cls(domain, x.mean(axis=0), np.linalg.inv(cov), 1.0)

    def to_dict(self) -> dict:
        return {
            'domain': self.domain,
            'mean': _rounded(self.mean),
            'precision': _rounded(self.precision),
            'bound': self.bound,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Reference:
        return cls(
            data['domain'],
            np.array(data['mean'], np.float64),
            np.array(data['precision'], np.float64),
            float(data['bound']),
        )


@dataclass(frozen=True)
class Gate:
    min_luminance: float
    max_clipped: float
    min_sharpness: float
    min_chroma: float
    references: tuple[Reference, ...]

    def distance(self, embedding: np.ndarray) -> np.ndarray:
        """Distance to the NEAREST reference domain, in units of its bound."""
        return np.min([r.distance(embedding) for r in self.references], axis=0)

    def reasons(self, crops: np.ndarray, embedding: np.ndarray | None) -> list[str]:
        """Per frame: '' when assessable, otherwise the first reason of REASONS that applies.
        `embedding`: the engine's output for these frames (one row per frame); None skips the
        distribution check (an engine without the output)."""
        q = quality(crops)
        checks = [
            q['luminance'] < self.min_luminance,
            q['clipped'] > self.max_clipped,
            q['sharpness'] < self.min_sharpness,
            q['chroma'] < self.min_chroma,
        ]
        if embedding is not None and self.references:
            checks.append(self.distance(embedding) > 1.0)
        out = []
        for i in range(len(crops)):
            out.append(next((r for r, c in zip(REASONS, checks) if c[i]), ''))
        return out

    def to_dict(self) -> dict:
        return {
            'min_luminance': self.min_luminance,
            'max_clipped': self.max_clipped,
            'min_sharpness': self.min_sharpness,
            'min_chroma': self.min_chroma,
            'references': [r.to_dict() for r in self.references],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Gate:
        return cls(
            float(data['min_luminance']),
            float(data['max_clipped']),
            float(data['min_sharpness']),
            float(data['min_chroma']),
            tuple(Reference.from_dict(r) for r in data.get('references', [])),
        )


GATE_FILE = 'gate.json'


class GateError(ValueError):
    """A card whose gate is missing for an engine file, or a gate file that does not match."""


def load_gate(model_dir, card, file_name: str) -> Gate | None:
    """The gate of engine file `file_name` (None when the card has no gate: a model without it
    judges every frame). The gate file is checked against the card's sha256."""
    import json
    from pathlib import Path

    if not card.gate:
        return None
    path = Path(model_dir) / card.gate.get('file', GATE_FILE)
    if not path.is_file():
        raise GateError(f'{path} not found: its model card has a gate (python -m training gate)')
    card.verify(path)
    variants = json.loads(path.read_text())
    if file_name not in variants:
        raise GateError(
            f'{file_name} has no unassessable-frame gate in {path.name} (a variant built after '
            'the gate was fitted): run python -m training gate again'
        )
    return Gate.from_dict(variants[file_name])
