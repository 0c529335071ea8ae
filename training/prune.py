"""Magnitude pruning of the trained part of the network, with a polynomial sparsity schedule.

Zhu & Gupta (2017): sparsity rises from 0 to the target as s(t) = target * (1 - (1 - t/T)^3)
over the first `ramp` fraction of the fine-tuning steps; every `every` steps each prunable kernel
(convolutions, depthwise convolutions, dense; not the classification heads) is masked at its own
magnitude quantile, and the mask is re-applied after every optimizer step so pruned weights stay
zero. Early stopping only keeps epochs at the full target (see recipe.py).

Written here rather than with tensorflow-model-optimization: its pruning wrappers need tf-keras
(Keras 2) and do not accept Keras 3 layers. What the zeros buy is measured, not assumed:
ONNX stores them densely, so the file only shrinks when compressed, and ONNX Runtime's CPU
kernels do not skip zeros; TensorRT exploits only 2:4 structured sparsity (Ampere and later,
e.g. Jetson Orin) with its SPARSE_WEIGHTS builder flag, which this unstructured pattern is not.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def prunable_kernels(model: Any) -> list[Any]:
    import keras

    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    return [
        layer.kernel
        for layer in model.layers
        if isinstance(layer, kinds) and layer.trainable and layer.name != 'logits'
    ]


class MagnitudePruner:
    def __init__(self, model: Any, target: float, steps: int, ramp: float = 0.6, every: int = 20):
        if not 0.0 < target < 1.0:
            raise ValueError(f'pruning target must be in (0, 1), not {target}')
        self.kernels = prunable_kernels(model)
        self.masks = [np.ones(k.shape, np.float32) for k in self.kernels]
        self.target, self.every = target, every
        self.ramp_steps = max(1, int(steps * ramp))
        self.step = 0

    def sparsity_at(self, step: int) -> float:
        progress = min(1.0, step / self.ramp_steps)
        return self.target * (1.0 - (1.0 - progress) ** 3)

    @property
    def at_target(self) -> bool:
        return self.step >= self.ramp_steps

    def after_step(self) -> None:
        """Call after each optimizer step: update masks on schedule, keep pruned weights zero."""
        self.step += 1
        if self.step % self.every == 0 or self.step == self.ramp_steps:
            sparsity = self.sparsity_at(self.step)
            for i, kernel in enumerate(self.kernels):
                magnitude = np.abs(np.asarray(kernel))
                cut = np.quantile(magnitude, sparsity)
                self.masks[i] = (magnitude > cut).astype(np.float32)
        for kernel, mask in zip(self.kernels, self.masks):
            kernel.assign(np.asarray(kernel) * mask)


def sparsity(trained: Any, full: Any) -> dict[str, float]:
    """Zero fraction of the trained part's prunable kernels, and of all the full model's weights
    (BatchNorm statistics included)."""
    kernels = prunable_kernels(trained)
    zeros = sum(int(np.sum(np.asarray(k) == 0)) for k in kernels)
    size = sum(int(np.prod(k.shape)) for k in kernels)
    every = sum(int(np.prod(w.shape)) for w in full.weights)
    return {'pruned_kernels': zeros / max(1, size), 'all_weights': zeros / max(1, every)}
