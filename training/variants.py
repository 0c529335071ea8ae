"""FP16 and INT8 variants of a model folder's model.fp32.onnx (the paper's compression engine).

Precision lives in the ONNX, so every backend (TensorRT 11 included) takes it from the file:
  * model.fp16.onnx: float16 weights and compute, float32 input/output kept;
  * model.int8-u8.onnx: Q/DQ, uint8 asymmetric activations, per-channel int8 weights
    (the fast flavour for ONNX Runtime on CPU);
  * model.int8-s8.onnx: Q/DQ, symmetric int8 activations and per-channel int8 weights
    (TensorRT explicit quantization).
Calibration images go through the shared preprocessing and never come from the held-out fold.
"""

from __future__ import annotations

import csv
import inspect
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skin_screening.core.model_card import ModelCard
from skin_screening.core.precision import (
    Backend,
    Precision,
    int8_flavour,
    parse_backend,
    parse_precision,
    variant_name,
)
from skin_screening.core.preprocess import Preprocessing, load_rgb, prepare

from .data import DataError, training_fold_rows
from .graph import compact_names, drop_zero_weight_zero_points, fold_conv_affine

CALIBRATION_METHODS = ('minmax', 'entropy', 'percentile')
# onnxruntime's entropy calibrator defaults to 128 histogram bins AND 128 quantized bins, which
# leaves the KL search nothing to choose from (it returns the min-max range). TensorRT's entropy
# calibration uses 2048 bins folded into 128: so do we.
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 2048, 128
PERCENTILE = 99.99
# Nodes kept in float in INT8 variants: MobileNetV2's stem conv and first two bottlenecks (11 of
# ~100 nodes) and the classifier output ('logits': entropy calibration clips a bimodal logit
# distribution, squashing probabilities towards 0.5). Measured on the shipped model: INT8 vs FP32
# logit correlation 0.900 with every node quantized, 0.974 keeping block 0, 0.992 keeping
# blocks 0-1, at the same CPU latency.
CALIBRATION_PART_IMAGES = 100
KEEP_FLOAT_MOBILENET_V2 = ('Conv1', 'expanded_conv_', 'block_1_', 'logits')


@dataclass(frozen=True)
class VariantConfig:
    precisions: tuple[str, ...] = ('fp32', 'fp16', 'int8')
    backends: tuple[str, ...] = ('onnxruntime',)
    # Measured on the shipped model (benchmarks/variants_table.py --calibration): minmax over
    # 1000 training images gave dF1 -0.000 and 97.2 % agreement; percentile/500 -0.012.
    calibration_images: int = 1000
    calibration_method: str = 'minmax'
    keep_float: tuple[str, ...] = KEEP_FLOAT_MOBILENET_V2  # name parts of nodes left in float
    # Histogram bins of entropy and percentile calibration (entropy folds them into 128).
    # onnxruntime's KL search is Python, quadratic in the bins: at 2048 (TensorRT's) it took
    # 110 s for this model's 105 activations, at 512 about 7 s (a coarser threshold grid).
    histogram_bins: int = ENTROPY_BINS
    batch: int = 16
    seed: int = 0


def calibration_paths(model_dir: Path, csv_path: str | Path | None, count: int, seed: int):
    """Image paths for calibration: a CSV (column path), or the run's training folds."""
    if csv_path is None:
        rows = training_fold_rows(model_dir)
        if rows is None:
            raise DataError(f'{model_dir} has no split.csv: pass --calibration-data CSV')
    else:
        rows = list(csv.DictReader(Path(csv_path).open()))
    if not rows or 'path' not in rows[0]:
        raise DataError('calibration CSV needs a path column and at least one row')
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(rows), size=min(count, len(rows)), replace=False)
    return [Path(rows[i]['path']) for i in sorted(pick)]


class ImageBatches:
    """onnxruntime CalibrationDataReader over real images through the shared preprocessing."""

    def __init__(self, paths: list[Path], spec: Preprocessing, input_name: str, batch: int):
        # onnxruntime's histogram calibrators stack per-batch outputs: all batches equal in size
        batch = max(1, min(batch, len(paths)))
        self.paths = paths[: len(paths) // batch * batch]
        self.spec, self.input_name, self.batch = spec, input_name, batch
        self.rewind()

    def rewind(self) -> None:
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.paths):
            return None
        chunk = self.paths[self._next : self._next + self.batch]
        self._next += self.batch
        return {self.input_name: np.stack([prepare(load_rgb(p), self.spec) for p in chunk])}

    def __len__(self) -> int:
        return len(self.paths)

    def slices(self, images: int):
        """Readers over consecutive parts of about `images` each (bounded calibration memory)."""
        step = max(1, images // self.batch) * self.batch
        for start in range(0, len(self.paths), step):
            yield ImageBatches(
                self.paths[start : start + step], self.spec, self.input_name, self.batch
            )


def folded_copy(fp32: Path, out: Path) -> Path:
    """The FP32 model with stray BatchNorm affines folded into their convs (exact rewrite)."""
    import onnx

    model = onnx.load(str(fp32))
    fold_conv_affine(model)
    onnx.save(model, str(out))
    return out


def make_fp16(fp32: Path, out: Path) -> Path:
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    compact_names(model)
    onnx.save(model, str(out))
    return out


def _calibrated_ranges(
    model: Path, reader: ImageBatches, method: str, symmetric: bool, cache: Path, bins: int
):
    """Compute activation ranges ourselves (real entropy bins) into an onnxruntime cache file."""
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        create_calibrator,
        save_tensors_data,
    )

    options = {'symmetric': symmetric}
    if method == 'entropy':
        options |= {'num_bins': bins, 'num_quantized_bins': ENTROPY_QUANTIZED_BINS}
    if method == 'percentile':
        options |= {'percentile': PERCENTILE, 'num_bins': bins}
    calib_method = {
        'minmax': CalibrationMethod.MinMax,
        'entropy': CalibrationMethod.Entropy,
        'percentile': CalibrationMethod.Percentile,
    }[method]
    with tempfile.TemporaryDirectory() as tmp:
        calibrator = create_calibrator(
            model,
            augmented_model_path=str(Path(tmp) / 'augmented.onnx'),
            calibrate_method=calib_method,
            extra_options=options,
        )
        # onnxruntime keeps every activation of a collect_data call in memory until it is
        # histogrammed (1000 images at 224: > 24 GB, killed here); its histograms merge across
        # calls, so feed the images in parts.
        for part in reader.slices(CALIBRATION_PART_IMAGES):
            calibrator.collect_data(part)
        save_tensors_data(calibrator.compute_data(), cache)
    return calib_method


def nodes_matching(model_path: Path, parts: tuple[str, ...]) -> list[str]:
    """Names of nodes whose name, inputs or outputs contain any of `parts`."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    return [
        n.name
        for n in graph.node
        if any(p in s for p in parts for s in (n.name, *n.input, *n.output))
    ]


def make_int8(
    fp32: Path,
    out: Path,
    flavour: str,
    reader: ImageBatches,
    method: str,
    keep_float: tuple[str, ...] = (),
    bins: int = ENTROPY_BINS,
) -> Path:
    """Static post-training quantization to a Q/DQ ONNX of the given flavour ('u8' or 's8')."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ValueError(f'calibration method must be one of {CALIBRATION_METHODS}')
    if 'calibration_cache_path' not in inspect.signature(quantize_static).parameters:
        raise RuntimeError('INT8 variants need onnxruntime >= 1.24 (calibration_cache_path)')
    symmetric = flavour == 's8'
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / 'pre.onnx'
        quant_pre_process(
            str(folded_copy(fp32, Path(tmp) / 'folded.onnx')), str(pre), skip_symbolic_shape=True
        )
        cache = Path(tmp) / 'ranges.json'
        calib_method = _calibrated_ranges(pre, reader, method, symmetric, cache, bins)
        quantize_static(
            str(pre),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=calib_method,
            calibration_cache_path=str(cache),
            nodes_to_exclude=nodes_matching(pre, keep_float) if keep_float else None,
            extra_options={
                'ActivationSymmetric': symmetric,
                'WeightSymmetric': True,
                # Float biases: ORT still fuses QLinearConv (it quantizes them at load) and
                # TensorRT wants them float; the int32 copies and their per-channel scales
                # were 9 % of the file (851 -> 772 KB, same latency).
                'QuantizeBias': False,
            },
        )
    import onnx

    model = onnx.load(str(out))
    drop_zero_weight_zero_points(model)
    compact_names(model)
    onnx.save(model, str(out))
    return out


def open_variant(model_dir: Path, file_name: str):
    """A variant file of the card through its own engine -> (engine, backend that runs it).
    A TensorRT-flavour (s8) file runs on TensorRT where it is installed, otherwise on ONNX Runtime
    (the same file; the backend is recorded with what was fitted through it)."""
    from skin_screening.core.engines import EngineError, open_engine
    from skin_screening.core.engines.onnxruntime import OnnxRuntimeEngine

    info = ModelCard.load(model_dir).files[file_name]
    precision = Precision(info['precision'])
    backend = Backend.TENSORRT if info.get('flavour') == 's8' else Backend.ONNXRUNTIME
    if backend is Backend.ONNXRUNTIME:
        return OnnxRuntimeEngine(Path(model_dir) / file_name, precision), backend
    try:
        return open_engine(model_dir, precision, backend), backend
    except EngineError:
        return OnnxRuntimeEngine(Path(model_dir) / file_name, precision), Backend.ONNXRUNTIME


def build_variants(
    model_dir: str | Path, config: VariantConfig, calibration_csv: str | Path | None = None
) -> list[Path]:
    """Write the requested variants beside model.fp32.onnx and record them in the model card."""
    model_dir = Path(model_dir)
    card = ModelCard.load(model_dir)
    fp32 = model_dir / variant_name(Precision.FP32, Backend.ONNXRUNTIME)
    if not fp32.is_file():
        raise FileNotFoundError(f'{fp32} not found: train or export a model first')
    source = {'source_sha256': card.files.get(fp32.name, {}).get('sha256')}
    precisions = [parse_precision(p) for p in config.precisions]
    flavours = sorted({int8_flavour(parse_backend(b)) for b in config.backends})
    written = [fp32]
    if Precision.FP16 in precisions:
        with tempfile.TemporaryDirectory() as tmp:
            folded = folded_copy(fp32, Path(tmp) / 'folded.onnx')
            written.append(
                make_fp16(folded, model_dir / variant_name(Precision.FP16, Backend.ONNXRUNTIME))
            )
        card.add_file(written[-1], precision='fp16', **source)
    if Precision.INT8 in precisions:
        paths = calibration_paths(
            model_dir, calibration_csv, config.calibration_images, config.seed
        )
        reader = ImageBatches(paths, card.preprocessing, card.input_name, config.batch)
        for flavour in flavours:
            backend = Backend.TENSORRT if flavour == 's8' else Backend.ONNXRUNTIME
            out = model_dir / variant_name(Precision.INT8, backend)
            method = config.calibration_method
            int8 = make_int8(
                fp32, out, flavour, reader, method, config.keep_float, config.histogram_bins
            )
            written.append(int8)
            card.add_file(
                out,
                precision='int8',
                flavour=flavour,
                calibration_method=method,
                **({'histogram_bins': config.histogram_bins} if method != 'minmax' else {}),
                kept_float=list(config.keep_float),
                calibration_images=len(reader),
                **source,
            )
    card.save(model_dir)
    return written
