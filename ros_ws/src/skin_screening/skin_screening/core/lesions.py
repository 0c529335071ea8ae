"""Lesion identity across a wearable session: passes by continuity, lesions by re-identification.

A worn camera passes over a lesion for a second or two, crosses skin, and may come back to it
later. Frames are not the unit of a clinician's work; lesions are. This module gives each
assessed frame a lesion id:

- A PASS is a run of assessed frames that continue each other: the phase-correlation peak
  between a frame and the pass's last frame (80x60 grey, Hann window; about 1 ms per 600x450
  frame here) is at least `min_continuity`, and no more than `max_gap_s` passed without an
  assessed frame. Unassessable frames (the gate's: dark, blurred, not a lesion image) start
  nothing and extend nothing. A pass becomes a lesion only once it holds `min_frames` frames:
  a transition of a frame or two starts no lesion.
- A new pass is a REVISIT of an earlier lesion only when a re-identification descriptor (unit
  vector) is given and its cosine similarity to that lesion's reaches `min_reid_similarity`
  (chosen on training-fold lesions for a bounded false-merge rate). Without a descriptor, every
  pass is a lesion of its own: when unsure, lesions are kept apart.
- A lesion's FUSED probability is the sigmoid of the mean calibrated logit over its assessed
  frames; its decision is suspicious when the fused probability OR any one of its passes' reaches
  the threshold: a merge can never dilute a suspicious pass below the threshold (a benign
  lesion's id never swallows a suspicious one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .postprocess import logit, sigmoid

THUMB = (80, 60)  # width, height of the continuity thumbnail


@dataclass(frozen=True)
class TrackingConfig:
    # phase-correlation peak between consecutive assessed frames; chosen on generated sessions
    # of training-fold images (benchmarks/lesion_tracking.py: halfway between the 0.1 % quantile
    # within passes, 0.706, and the 99.9 % quantile across a lesion change, 0.514)
    min_continuity: float = 0.61
    max_gap_s: float = 0.5  # a pass survives this long without an assessed frame
    min_frames: int = 3  # assessed frames before a pass counts as a lesion
    min_reid_similarity: float = 2.0  # cosine similarity for a revisit (> 1: never merge)
    best_views: int = 3  # stamps kept per lesion: its most confident frames

    def __post_init__(self) -> None:
        if not 0.0 < self.min_continuity < 1.0 or self.max_gap_s <= 0 or self.min_frames < 1:
            raise ValueError('need 0 < min_continuity < 1, max_gap_s > 0, min_frames >= 1')


@dataclass
class Pass:
    """One continuous look at a lesion."""

    index: int
    first_ns: int
    last_ns: int
    logits: list[float] = field(default_factory=list)
    descriptor: np.ndarray | None = None

    @property
    def probability(self) -> float:
        return float(sigmoid(sum(self.logits) / len(self.logits)))


@dataclass
class Lesion:
    id: str
    passes: list[Pass]
    uncertainty_sum: float = 0.0
    best: list[tuple[float, int]] = field(default_factory=list)  # (confidence, stamp_ns)

    @property
    def frames(self) -> int:
        return sum(len(p.logits) for p in self.passes)

    @property
    def first_ns(self) -> int:
        return self.passes[0].first_ns

    @property
    def last_ns(self) -> int:
        return max(p.last_ns for p in self.passes)

    @property
    def probability(self) -> float:
        """Fused: sigmoid of the mean calibrated logit over every assessed frame."""
        return float(sigmoid(sum(sum(p.logits) for p in self.passes) / self.frames))

    @property
    def uncertainty(self) -> float:
        return self.uncertainty_sum / self.frames

    def suspicious(self, threshold: float) -> bool:
        return self.probability >= threshold or any(
            p.probability >= threshold for p in self.passes if len(p.logits)
        )

    def descriptor(self) -> np.ndarray | None:
        found = [p.descriptor for p in self.passes if p.descriptor is not None]
        if not found:
            return None
        mean = np.mean(found, axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-9)


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """The continuity thumbnail: 80x60 grey, zero mean, unit variance, float32."""
    import cv2

    small = cv2.resize(rgb, THUMB, interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return (grey - grey.mean()) / (grey.std() + 1e-3)


class ContinuityMeter:
    """Phase-correlation peak between two thumbnails (1: the same view shifted)."""

    def __init__(self) -> None:
        import cv2

        self._window = cv2.createHanningWindow(THUMB, cv2.CV_32F)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
        import cv2

        _, response = cv2.phaseCorrelate(a, b, self._window)
        return float(response)


class LesionTracker:
    """Frames in stamp order -> lesion ids ('' for a frame that belongs to none yet)."""

    def __init__(self, config: TrackingConfig = TrackingConfig(), prefix: str = 'L'):
        self.config = config
        self.prefix = prefix
        self.lesions: dict[str, Lesion] = {}
        self._meter = ContinuityMeter()
        self._pass: Pass | None = None  # the open pass
        self._lesion: Lesion | None = None  # its lesion, once it holds min_frames frames
        self._pending: list[tuple[int, float, float]] = []  # frames of a pass not yet a lesion
        self._thumb: np.ndarray | None = None
        self._passes = 0

    def observe(
        self,
        stamp_ns: int,
        rgb: np.ndarray | None,
        probability: float,
        uncertainty: float = 0.0,
        assessed: bool = True,
        descriptor: np.ndarray | None = None,
    ) -> str:
        """One frame (its calibrated probability; `assessed` False for an unassessable one)
        -> the id of the lesion it shows, '' for none (unassessable, or a pass too short yet).
        `descriptor`, when given, identifies the pass's lesion against earlier ones."""
        cfg = self.config
        if self._pass is not None and stamp_ns - self._pass.last_ns > cfg.max_gap_s * 1e9:
            self._close()
        if not assessed or rgb is None:
            return ''
        thumb = thumbnail(rgb)
        if self._pass is not None and self._meter(self._thumb, thumb) < cfg.min_continuity:
            self._close()
        self._thumb = thumb
        if self._pass is None:
            self._pass = Pass(self._passes, stamp_ns, stamp_ns)
            self._passes += 1
        p = self._pass
        p.last_ns = stamp_ns
        p.logits.append(float(logit(probability)))
        if descriptor is not None and p.descriptor is None:
            p.descriptor = np.asarray(descriptor, np.float32)
        frame = (stamp_ns, float(probability), float(uncertainty))
        if self._lesion is None:
            self._pending.append(frame)
            if len(p.logits) < cfg.min_frames:
                return ''
            self._lesion = self._identify(p)
            for pending in self._pending:
                self._note(self._lesion, *pending)
            self._pending = []
        else:
            self._note(self._lesion, *frame)
        return self._lesion.id

    def current(self) -> Lesion | None:
        return self._lesion

    def _note(self, lesion: Lesion, stamp_ns: int, probability: float, uncertainty: float):
        lesion.uncertainty_sum += uncertainty
        lesion.best.append((abs(probability - 0.5), stamp_ns))
        lesion.best = sorted(lesion.best, reverse=True)[: self.config.best_views]

    def _identify(self, p: Pass) -> Lesion:
        """The earlier lesion this pass revisits (most similar, at or above the bound), else a
        new lesion."""
        best, best_sim = None, self.config.min_reid_similarity
        if p.descriptor is not None:
            for lesion in self.lesions.values():
                d = lesion.descriptor()
                if d is not None and (sim := float(d @ p.descriptor)) >= best_sim:
                    best, best_sim = lesion, sim
        if best is not None:
            best.passes.append(p)
            return best
        lesion = Lesion(f'{self.prefix}{len(self.lesions) + 1}', [p])
        self.lesions[lesion.id] = lesion
        return lesion

    def _close(self) -> None:
        self._pass, self._lesion, self._pending, self._thumb = None, None, [], None


def identity_scores(truth: list[str], predicted: list[str]) -> dict[str, float]:
    """Per-frame ground-truth lesion ids and tracker ids ('' = none) -> IDF1 (each predicted id
    matched to at most one true lesion by frame overlap, Hungarian) and false merges: predicted
    ids covering 2+ true lesions (counting only lesions with at least 3 of its frames)."""
    from scipy.optimize import linear_sum_assignment

    gt = sorted({t for t in truth if t})
    pr = sorted({p for p in predicted if p})
    if not gt or not pr:
        return {'idf1': 0.0, 'false_merges': 0, 'ids': len(pr), 'lesions': len(gt)}
    gi, pi = {g: i for i, g in enumerate(gt)}, {p: i for i, p in enumerate(pr)}
    overlap = np.zeros((len(gt), len(pr)))
    for t, p in zip(truth, predicted, strict=True):
        if t and p:
            overlap[gi[t], pi[p]] += 1
    rows, cols = linear_sum_assignment(-overlap)
    idtp = overlap[rows, cols].sum()
    n_true, n_pred = sum(1 for t in truth if t), sum(1 for p in predicted if p)
    merges = int(((overlap >= 3).sum(axis=0) >= 2).sum())
    return {
        'idf1': float(2 * idtp / (n_true + n_pred)),
        'false_merges': merges,
        'ids': len(pr),
        'lesions': len(gt),
    }
