"""Frames -> Scores with one engine and one model card: what the node and evaluation both run."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .engines import Engine, EngineError, open_engine, variant_path, warmup
from .explain import CAM_OUTPUT, cam_maps
from .gate import EMBEDDING_OUTPUT, load_gate
from .model_card import ModelCard
from .operating_points import CUSTOM
from .postprocess import DecisionRule, Scores, score
from .precision import Backend, Precision, parse_backend, parse_precision
from .preprocess import crops_batch, resize


class Classifier:
    """A model folder opened at one precision on one backend."""

    def __init__(
        self,
        model_dir: str | Path,
        precision: Precision | str = Precision.FP32,
        backend: Backend | str = Backend.ONNXRUNTIME,
        threads: int | None = None,
        rule: DecisionRule | None = None,
        warmup_runs: int = 3,
        operating_point: str | None = None,
        gate: bool = True,
    ):
        self.model_dir = Path(model_dir)
        self.precision, self.backend = parse_precision(precision), parse_backend(backend)
        self.card = ModelCard.load(self.model_dir)
        # Integrity first: the ONNX file the engine is made from must be the card's (a TensorRT
        # engine is cached under this hash, so it is checked through it).
        onnx = variant_path(self.model_dir, self.precision, self.backend)
        self.card.verify(onnx)
        # This variant's own calibration at the chosen operating point (ValueError if unknown).
        self.rule, self.operating_point = self.card.rule(onnx.name, operating_point)
        if rule is not None:
            self.rule, self.operating_point = rule, CUSTOM
        self.gate = load_gate(self.model_dir, self.card, onnx.name) if gate else None
        self.gate_ms = 0.0  # time of the gate's checks on the last batch
        self.engine: Engine = open_engine(self.model_dir, self.precision, self.backend, threads)
        self._check_compatible()
        if warmup_runs:
            warmup(self.engine, iterations=warmup_runs)
        self.model_id = self.card.model_id(onnx.name)  # verified: the hash of the file loaded

    def _check_compatible(self) -> None:
        spec = self.engine.inputs[0]
        size = self.card.preprocessing.input_size
        if spec.name != self.card.input_name or tuple(spec.shape[1:]) != (size, size, 3):
            raise EngineError(
                f'{self.engine.path} takes {spec.name}{list(spec.shape)}, but its model card '
                f'says {self.card.input_name}[N, {size}, {size}, 3]: engine and card do not match'
            )
        names = {o.name for o in self.engine.outputs}
        if self.card.output_name not in names:
            raise EngineError(f'{self.engine.path} has no output {self.card.output_name!r}')
        if self.gate is not None and self.gate.references and EMBEDDING_OUTPUT not in names:
            raise EngineError(
                f"{self.engine.path} has no {EMBEDDING_OUTPUT!r} output, which its model card's "
                'gate needs: export the model again (python -m training gate adds it)'
            )

    def outputs(self, batch: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
        """Preprocessed N x S x S x 3 -> (every engine output by name, engine milliseconds)."""
        start = time.perf_counter()
        out = self.engine.infer({self.card.input_name: batch})
        return out, (time.perf_counter() - start) * 1000.0

    def logits(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        """Preprocessed N x S x S x 3 -> (N x K logits, engine milliseconds)."""
        out, ms = self.outputs(batch)
        return out[self.card.output_name], ms

    def classify(self, frames: Sequence[np.ndarray]) -> tuple[Scores, float]:
        """RGB uint8 frames -> (Scores, engine milliseconds for the batch), the unassessable
        frames marked by the gate (when the card has one for this engine file).

        With test-time augmentation (rule.views > 1) all views of all frames go in ONE engine call.
        """
        return self.classify_crops(np.stack([resize(f, self.card.preprocessing) for f in frames]))

    def classify_crops(self, crops: np.ndarray) -> tuple[Scores, float]:
        """classify() of frames already resized to the model's view (N x S x S x 3 uint8)."""
        out, ms = self.outputs(crops_batch(crops, self.card.preprocessing, self.rule.views))
        return self._scores(out, crops), ms

    def _scores(self, out: dict[str, np.ndarray], crops: np.ndarray) -> Scores:
        scores = score(out[self.card.output_name], self.rule)
        if self.gate is None:
            return scores
        start = time.perf_counter()
        embedding = out.get(EMBEDDING_OUTPUT)
        embedding = None if embedding is None else embedding[:: self.rule.views]
        scores = scores.gated(self.gate.reasons(crops, embedding), self.rule.threshold)
        self.gate_ms = (time.perf_counter() - start) * 1000.0
        return scores

    @property
    def has_cam(self) -> bool:
        return CAM_OUTPUT in {o.name for o in self.engine.outputs}

    def explain(
        self, frames: Sequence[np.ndarray]
    ) -> tuple[Scores, float, np.ndarray, np.ndarray]:
        """RGB frames -> (Scores, engine ms, N x h x w activation maps in [0, 1], the crops the
        model saw). The maps are those of the un-augmented view."""
        if not self.has_cam:
            raise EngineError(f'{self.engine.path} has no {CAM_OUTPUT!r} output (export it again)')
        spec, views = self.card.preprocessing, self.rule.views
        crops = np.stack([resize(frame, spec) for frame in frames])
        out, ms = self.outputs(crops_batch(crops, spec, views))
        return self._scores(out, crops), ms, cam_maps(out[CAM_OUTPUT][::views], self.rule), crops

    def close(self) -> None:
        self.engine.close()
