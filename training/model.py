"""MobileNetV2 transfer-learning classifier, split at a cut layer into frozen front and top."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ModelConfig

KERAS_WEIGHTS = 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{size}_no_top.h5'


class TrainingError(RuntimeError):
    """Training cannot proceed as configured (message says what to change)."""


def import_keras() -> Any:
    try:
        import keras
    except ImportError as exc:
        raise TrainingError(
            'training needs TensorFlow/Keras: uv sync (installs the training group)'
        ) from exc
    return keras


def _keras_file_name(config: ModelConfig) -> str:
    alpha = {0.35: '0.35', 0.5: '0.5', 0.75: '0.75', 1.0: '1.0', 1.3: '1.3', 1.4: '1.4'}
    # Keras publishes weights for these input sizes and loads the 224 ones for any other size
    # (the network is fully convolutional, so they fit): name the file Keras would fetch.
    size = config.input_size if config.input_size in (96, 128, 160, 192, 224) else 224
    return KERAS_WEIGHTS.format(alpha=alpha.get(config.alpha, config.alpha), size=size)


def resolve_weights(config: ModelConfig) -> tuple[str | None, str]:
    """-> (argument for keras.applications, provenance text naming the file and its sha256).
    Downloads happen here, if at all."""
    path, source = _resolve_weights(config)
    if path:  # every provenance text of a file ends with ')': its hash goes inside
        from skin_screening.core.model_card import sha256_file

        source = f'{source[:-1]}, sha256 {sha256_file(path)})'
    return path, source


def _resolve_weights(config: ModelConfig) -> tuple[str | None, str]:
    choice = config.weights
    if choice == 'none':
        return None, 'random initialisation'
    if choice != 'imagenet':
        if not Path(choice).is_file():
            raise TrainingError(f'weights file {choice} not found')
        return choice, f'file ({choice})'
    keras = import_keras()
    name = _keras_file_name(config)
    home = os.environ.get('KERAS_HOME', '~/.keras')
    cached = Path(home).expanduser() / 'models' / name
    if cached.is_file():
        return str(cached), f'ImageNet ({name}, Keras cache)'
    try:
        base = 'https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/'
        return keras.utils.get_file(name, base + name, cache_subdir='models'), f'ImageNet ({name})'
    except Exception as exc:  # offline: URLError, socket timeouts, HTTP errors
        fallback = config.weights_fallback
        alpha = _keras_file_name(config).split('_')[-4]  # '0.5', '1.0', ...
        # A stand-in file must be for the same alpha (Keras' own name, or another source's
        # file named with it, e.g. mobilenet_v2_1.0_224_no_top.from_coral_qat.h5).
        if fallback and Path(fallback).is_file() and f'_{alpha}_' in Path(fallback).name:
            print(
                f'note: ImageNet weights could not be downloaded ({type(exc).__name__}); '
                f'using the local file {fallback}'
            )
            return fallback, f'ImageNet ({name} unreachable; local file {fallback})'
        raise TrainingError(
            f'ImageNet weights {name} could not be downloaded ({exc}). Offline? Put the file '
            f'in ~/.keras/models/, or set model.weights to a local .h5 (e.g. the alpha 0.5 '
            f'weights in ../shared/weights with model.alpha=0.5), or model.weights=none.'
        ) from exc


@dataclass
class SplitModel:
    full: Any  # image -> logits (N x heads): what is exported
    front: Any  # image -> cut activations (frozen, cached); None: nothing frozen
    top: Any  # cut activations -> logits (trained)
    head_layers: list[Any]
    weights_source: str


ARCHITECTURES = ('mobilenet_v2', 'compact_cnn')


def _head(keras, features, config: ModelConfig):
    """Global pooling ('pool': CAM and Grad-CAM find the feature map here), dropout, logits.
    Linear after the pooling, so the class activation map is exact."""
    pooled = keras.layers.GlobalAveragePooling2D(name='pool')(features)
    dropped = keras.layers.Dropout(config.dropout, name='dropout')(pooled)
    return keras.layers.Dense(config.heads, name='logits')(dropped)


def build_compact_cnn(config: ModelConfig) -> SplitModel:
    """The compact 3-block CNN of the comparison papers, trained from scratch. Its 'dense' layer
    is a 1x1 convolution before the pooling (same weights as a dense layer after it, but the
    head stays linear after the pooling, so CAM works). The whole network trains: front is None.
    """
    keras = import_keras()
    layers = keras.layers
    size = config.input_size
    image = keras.Input((size, size, 3), name='image')
    x = image
    for block, width in enumerate(config.widths):
        for conv in range(config.convs_per_block):
            stride = 2 if block == 0 and conv == 0 else 1
            x = layers.Conv2D(
                width, 3, stride, padding='same', use_bias=False, name=f'block{block}_conv{conv}'
            )(x)
            x = layers.BatchNormalization(name=f'block{block}_bn{conv}')(x)
            x = layers.ReLU(name=f'block{block}_relu{conv}')(x)
        x = layers.MaxPooling2D(2, name=f'block{block}_pool')(x)
    x = layers.Conv2D(config.dense, 1, activation='relu', name='embed')(x)
    full = keras.Model(image, _head(keras, x, config), name='compact_cnn')
    head = [full.get_layer(n) for n in ('pool', 'dropout', 'logits')]
    return SplitModel(full, None, full, head, 'random initialisation (trained from scratch)')


def build_model(config: ModelConfig) -> SplitModel:
    if config.architecture == 'compact_cnn':
        return build_compact_cnn(config)
    if config.architecture != 'mobilenet_v2':
        raise TrainingError(
            f'unknown architecture {config.architecture!r}; one of {ARCHITECTURES}'
        )
    keras = import_keras()
    weights, source = resolve_weights(config)
    size = config.input_size
    base = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=config.alpha, include_top=False, weights=weights
    )
    logits = _head(keras, base.output, config)
    full = keras.Model(base.input, logits, name=f'mobilenetv2_a{config.alpha}')
    try:
        cut = base.get_layer(config.cut_layer).output
    except ValueError as exc:
        raise TrainingError(f'no layer {config.cut_layer!r} in MobileNetV2 to cut at') from exc
    for layer in full.layers:  # BatchNorm stays in inference mode (statistics frozen)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    head = [full.get_layer(n) for n in ('pool', 'dropout', 'logits')]
    return SplitModel(full, keras.Model(full.input, cut), keras.Model(cut, logits), head, source)


def set_phase(model: SplitModel, phase: str) -> None:
    """'head': only the classification head trains; 'finetune': everything above the cut."""
    keras = import_keras()
    for layer in model.top.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        else:
            layer.trainable = phase == 'finetune' or layer in model.head_layers
