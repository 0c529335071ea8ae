"""Engine outputs -> calibrated probability, uncertainty and decision.

One module, used by the inference node and by offline evaluation alike. The engine outputs one
logit per head ('logits', shape N x K). K = 1 is a plain classifier; K > 1 heads are an ensemble
on one backbone, whose disagreement is the epistemic uncertainty (mutual information).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

OTHER, SUSPICIOUS, REFER = 0, 1, 2
LABELS = {OTHER: 'other', SUSPICIOUS: 'skin_cancer', REFER: 'refer'}
UNCERTAINTY_SCORES = ('entropy', 'epistemic')
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

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f'temperature must be > 0, not {self.temperature}')
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f'threshold must be in [0, 1], not {self.threshold}')
        if self.referral_score not in UNCERTAINTY_SCORES:
            raise ValueError(f'referral_score must be one of {UNCERTAINTY_SCORES}')

    def to_dict(self) -> dict:
        return asdict(self)

    def calibrate(self, logits: np.ndarray) -> np.ndarray:
        """Logits (any shape) -> calibrated probabilities, element-wise."""
        return sigmoid(logits / self.temperature + self.bias)

    @classmethod
    def from_dict(cls, data: dict) -> DecisionRule:
        keys = ('temperature', 'bias', 'threshold', 'referral_threshold', 'referral_score')
        return cls(**{k: data[k] for k in keys if k in data})


@dataclass(frozen=True)
class Scores:
    """Per-frame arrays (length N)."""

    probability: np.ndarray
    entropy: np.ndarray
    epistemic: np.ndarray  # NaN for K = 1
    decision: np.ndarray


def binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


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
    """Logits (N x K) -> probability (mean of heads), entropy, mutual information, decision."""
    logits = as_logits(outputs)
    heads = rule.calibrate(logits)
    probability = heads.mean(axis=1)
    entropy = binary_entropy(probability)
    if logits.shape[1] > 1:
        epistemic = np.maximum(entropy - binary_entropy(heads).mean(axis=1), 0.0)
    else:
        epistemic = np.full_like(probability, np.nan)
    return Scores(probability, entropy, epistemic, decide(probability, entropy, epistemic, rule))


def decide(
    probability: np.ndarray, entropy: np.ndarray, epistemic: np.ndarray, rule: DecisionRule
) -> np.ndarray:
    """SUSPICIOUS at or above the threshold, REFER where uncertainty exceeds the referral bound."""
    decision = np.where(probability >= rule.threshold, SUSPICIOUS, OTHER)
    if rule.referral_threshold is not None:
        uncertainty = entropy if rule.referral_score == 'entropy' else epistemic
        decision = np.where(np.nan_to_num(uncertainty) > rule.referral_threshold, REFER, decision)
    return decision.astype(np.uint8)
