"""Engine outputs -> calibrated probability, uncertainty and decision.

One module, used by the inference node and by offline evaluation alike. The engine outputs one
logit per head ('logits', shape N x K). K = 1 is a plain classifier; K > 1 heads are an ensemble
on one backbone, whose disagreement is the epistemic uncertainty (mutual information).
With test-time augmentation the engine sees V dihedral views per frame (rows frame-major) and
each head's probability is averaged over the views before the heads are combined.

Uncertainty scores, any of which can drive referral:
- entropy: binary entropy of the probability (total predictive uncertainty), [0, ln 2];
- epistemic: mutual information between prediction and heads (NaN for K = 1), [0, entropy];
- ambiguity: closeness to the DECISION threshold, exp(-|logit p - logit threshold|), (0, 1].
  Entropy peaks at p = 0.5, but the screening threshold is chosen for F1 or sensitivity and sits
  elsewhere; the frames a clinician should see are the ones the threshold barely separates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from .preprocess import VIEW_COUNTS

OTHER, SUSPICIOUS, REFER, UNASSESSABLE = 0, 1, 2, 3
NOT_A_LESION = 'not a lesion image'  # the gate's one reason that is not about image quality
LABELS = {OTHER: 'other', SUSPICIOUS: 'skin_cancer', REFER: 'refer', UNASSESSABLE: 'unassessable'}
UNCERTAINTY_SCORES = ('entropy', 'epistemic', 'ambiguity')
_EPS = 1e-7


class NonFiniteOutput(ValueError):
    """The engine produced NaN/Inf: the frame gets no diagnosis."""


@dataclass(frozen=True)
class DecisionRule:
    """Calibration and decision parameters chosen on validation data, kept in the model card."""

    temperature: float = 1.0
    bias: float = 0.0  # calibrated head probability: sigmoid(logit / temperature + bias)
    threshold: float = 0.5
    referral_threshold: float | None = None  # None: never REFER
    referral_score: str = 'entropy'
    views: int = 1  # test-time augmentation: dihedral views averaged per frame (1, 2, 4 or 8)

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f'temperature must be > 0, not {self.temperature}')
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f'threshold must be in [0, 1], not {self.threshold}')
        if self.referral_score not in UNCERTAINTY_SCORES:
            raise ValueError(f'referral_score must be one of {UNCERTAINTY_SCORES}')
        if self.views not in VIEW_COUNTS:
            raise ValueError(
                f'views (test-time augmentation) must be in {VIEW_COUNTS}, not {self.views}'
            )

    def to_dict(self) -> dict:
        return asdict(self)

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        """Logits (any shape) -> calibrated probabilities, element-wise."""
        return sigmoid(logits / self.temperature + self.bias)

    @classmethod
    def from_dict(cls, data: dict) -> DecisionRule:
        keys = [f.name for f in fields(cls)]
        return cls(**{k: data[k] for k in keys if k in data})


@dataclass(frozen=True)
class Scores:
    """Per-frame arrays (length N)."""

    probability: np.ndarray
    entropy: np.ndarray
    epistemic: np.ndarray  # NaN for K = 1
    ambiguity: np.ndarray
    decision: np.ndarray
    reasons: tuple[str, ...] = ()  # per frame, '' = assessable (core/gate.py); () = no gate

    def gated(self, reasons: list[str], threshold: float | None = None) -> Scores:
        """These scores with the gate's verdict: a frame with a reason is UNASSESSABLE (its
        probability is kept, for the record, but it decides nothing) - except a frame that is
        readable but flagged only as NOT_A_LESION with its calibrated probability at or above
        `threshold`: that is REFER (a clinician should look: it may be a lesion the gate does
        not know, never treated like a black frame). Quality failures stay UNASSESSABLE."""
        flagged = np.array([bool(r) for r in reasons], bool)
        decision = np.where(flagged, UNASSESSABLE, self.decision)
        if threshold is not None:
            unknown = np.array([r == NOT_A_LESION for r in reasons], bool)
            decision = np.where(unknown & (self.probability >= threshold), REFER, decision)
        return replace(self, decision=decision.astype(np.uint8), reasons=tuple(reasons))

    def uncertainty(self, name: str) -> np.ndarray:
        if name not in UNCERTAINTY_SCORES:
            raise ValueError(f'unknown uncertainty score {name!r} (one of {UNCERTAINTY_SCORES})')
        return getattr(self, name)


def binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def ambiguity(probability: np.ndarray, threshold: float) -> np.ndarray:
    """exp(-|logit p - logit threshold|): 1 on the threshold, towards 0 far from it."""
    return np.exp(-np.abs(logit(probability) - logit(threshold)))


def stack_views(per_view: list[np.ndarray]) -> np.ndarray:
    """V arrays of N x K logits (one per view) -> (N * V) x K, the views of a frame adjacent."""
    stacked = np.stack([np.asarray(v).reshape(len(v), -1) for v in per_view], axis=1)
    return stacked.reshape(-1, stacked.shape[-1])


def per_frame(logits: np.ndarray, views: int) -> np.ndarray:
    """(N * V) x K logits -> N x (V * K): every member (view, head) of a frame on one row."""
    logits = as_logits(logits)
    return logits.reshape(-1, views * logits.shape[1])


def as_logits(outputs: np.ndarray) -> np.ndarray:
    """Engine 'logits' output -> float64 N x K, refusing non-finite values."""
    logits = np.asarray(outputs, dtype=np.float64)
    if logits.ndim == 1:
        logits = logits[:, None]
    if logits.ndim != 2:
        raise ValueError(f'expected logits of shape N x K, got {logits.shape}')
    if not np.all(np.isfinite(logits)):
        raise NonFiniteOutput('engine output contains NaN or Inf')
    return logits


def score(outputs: np.ndarray, rule: DecisionRule) -> Scores:
    """Logits ((N * views) x K) -> per frame: probability (mean of heads), uncertainty, decision.

    (Views averaged per head first: test-time augmentation is not model disagreement.)
    """
    logits = as_logits(outputs)
    if len(logits) % rule.views:
        raise ValueError(f'{len(logits)} output rows are not a whole number of {rule.views} views')
    heads = rule.calibrate(logits).reshape(-1, rule.views, logits.shape[1]).mean(axis=1)
    probability = heads.mean(axis=1)
    entropy = binary_entropy(probability)
    if logits.shape[1] > 1:
        epistemic = np.maximum(entropy - binary_entropy(heads).mean(axis=1), 0.0)
    else:
        epistemic = np.full_like(probability, np.nan)
    scores = Scores(
        probability, entropy, epistemic, ambiguity(probability, rule.threshold), decision=None
    )
    return replace(scores, decision=decide(scores, rule))


def decide(scores: Scores, rule: DecisionRule) -> np.ndarray:
    """SUSPICIOUS at or above the threshold, REFER where uncertainty exceeds the referral bound."""
    decision = np.where(scores.probability >= rule.threshold, SUSPICIOUS, OTHER)
    if rule.referral_threshold is not None:
        uncertainty = np.nan_to_num(scores.uncertainty(rule.referral_score))
        decision = np.where(uncertainty > rule.referral_threshold, REFER, decision)
    return decision.astype(np.uint8)
