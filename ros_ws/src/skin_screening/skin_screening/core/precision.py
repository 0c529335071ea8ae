"""Precision and backend: one value each, parsed in one place; artifact names derive from them."""

from __future__ import annotations

from enum import Enum


class Precision(str, Enum):
    FP32 = 'fp32'
    FP16 = 'fp16'
    INT8 = 'int8'


class Backend(str, Enum):
    ONNXRUNTIME = 'onnxruntime'
    TENSORRT = 'tensorrt'


def _parse(kind: type[Enum], value: object, what: str):
    try:
        return kind(str(getattr(value, 'value', value)).lower())
    except ValueError:
        choices = ', '.join(member.value for member in kind)
        raise ValueError(f'unknown {what} {value!r}: use one of {choices}') from None


def parse_precision(value: str | Precision) -> Precision:
    return _parse(Precision, value, 'precision')


def parse_backend(value: str | Backend) -> Backend:
    return _parse(Backend, value, 'backend')


def int8_flavour(backend: Backend) -> str:
    """The Q/DQ flavour each backend runs fast.

    TensorRT's explicit quantization wants symmetric int8 activations and per-channel int8 weights
    ('s8'); ONNX Runtime on CPU runs uint8 asymmetric activations far faster ('u8': measured
    here about 1.9 ms vs 7.5 ms per image for MobileNetV2-1.0).
    """
    return 's8' if backend is Backend.TENSORRT else 'u8'


def variant_name(precision: Precision, backend: Backend) -> str:
    """File name of the ONNX variant that `backend` runs at `precision`.

    model.fp32.onnx, model.fp16.onnx, model.int8-u8.onnx (ONNX Runtime CPU) or
    model.int8-s8.onnx (TensorRT).
    """
    if precision is Precision.INT8:
        return f'model.int8-{int8_flavour(backend)}.onnx'
    return f'model.{precision.value}.onnx'
