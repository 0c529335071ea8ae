"""model_card.json: everything needed to run, trust and reproduce a model artifact."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .operating_points import resolve_rule
from .postprocess import DecisionRule
from .preprocess import Preprocessing

CARD_NAME = 'model_card.json'
# The shipped default model, relative to the checkout (or the package share when installed):
# the best CV ROC-AUC among the zoo's models whose INT8 keeps 30 fps in the node on a 2-core CPU.
DEFAULT_MODEL = 'data/models/mobilenetv2-a1.0-clinical'


class ModelCardError(ValueError):
    """Missing or unreadable model card."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ModelCard:
    name: str
    architecture: str
    preprocessing: Preprocessing
    decision: DecisionRule
    heads: int = 1
    input_name: str = 'image'
    output_name: str = 'logits'
    classes: tuple[str, str] = ('other', 'skin_cancer')
    data: dict[str, Any] = field(default_factory=dict)  # dataset, mapping, counts, split
    training: dict[str, Any] = field(default_factory=dict)  # resolved config, seeds, wall time
    metrics: dict[str, Any] = field(default_factory=dict)  # CV folds, mean/std, held-out
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> sha256, bytes, ...
    # Per-variant calibration and named thresholds (see core/operating_points.py); empty: the
    # single `decision` rule applies to every variant.
    operating_points: dict[str, Any] = field(default_factory=dict)
    # Unassessable-frame gate (core/gate.py): its file, how it was chosen, what it measured.
    gate: dict[str, Any] = field(default_factory=dict)

    def model_id(self, file_name: str = 'model.fp32.onnx') -> str:
        digest = self.files.get(file_name, {}).get('sha256', '')
        return f'{self.name}@{digest[:8]}' if digest else self.name

    def rule(self, file_name: str, operating_point: str | None = None) -> tuple[DecisionRule, str]:
        """The decision rule of engine file `file_name` at `operating_point` (None: the card's
        default) -> (rule, operating point name)."""
        return resolve_rule(self.decision, self.operating_points, file_name, operating_point)

    def verify(self, path: str | Path) -> str:
        """The sha256 of `path`, after checking it against this card; ModelCardError naming the
        file when it is not listed, differs from the card (corrupt or replaced), or was built
        from another fp32 model than the card's (a stale variant)."""
        path = Path(path)
        entry = self.files.get(path.name, {})
        if 'sha256' not in entry:
            raise ModelCardError(
                f'{path} is not listed in its model card: rebuild the variants '
                '(python -m training variants) or release the model again'
            )
        digest = sha256_file(path)
        if digest != entry['sha256']:
            raise ModelCardError(
                f'{path} does not match its model card (sha256 {digest[:12]}, card '
                f'{entry["sha256"][:12]}): the file is corrupt or was replaced'
            )
        source, fp32 = entry.get('source_sha256'), self.files.get('model.fp32.onnx', {})
        if source and fp32.get('sha256') and source != fp32['sha256']:
            raise ModelCardError(
                f'{path} was built from another model.fp32.onnx (sha256 {source[:12]}) than the '
                f"card's ({fp32['sha256'][:12]}): a stale variant, rebuild it with "
                'python -m training variants'
            )
        return digest

    def add_file(self, path: Path, **info: Any) -> None:
        self.files[path.name] = {'sha256': sha256_file(path), 'bytes': path.stat().st_size, **info}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data['preprocessing'] = self.preprocessing.to_dict()
        data['decision'] = self.decision.to_dict()
        data['classes'] = list(self.classes)
        return data

    def save(self, directory: Path) -> Path:
        path = Path(directory) / CARD_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str) + '\n')
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ModelCard:
        path = Path(directory)
        path = path if path.suffix == '.json' else path / CARD_NAME
        try:
            data = json.loads(path.read_text())
            data['preprocessing'] = Preprocessing.from_dict(data['preprocessing'])
            data['decision'] = DecisionRule.from_dict(data['decision'])
            data['classes'] = tuple(data.get('classes', ('other', 'skin_cancer')))
            return cls(**data)
        except FileNotFoundError:
            raise ModelCardError(f'no model card at {path}') from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelCardError(f'model card {path} is invalid: {exc}') from exc
