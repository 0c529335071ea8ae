"""Variant building on a real model with real calibration images."""

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from skin_screening.core.classifier import Classifier
from skin_screening.core.model_card import ModelCard
from skin_screening.core.postprocess import score
from skin_screening.core.preprocess import prepare_batch

from tests.test_engines import assert_agrees
from training.evaluate import interleaved_ms
from training.variants import VariantConfig, build_variants


def _activation_scales(path):
    """Scales of the activation QuantizeLinear nodes, in graph order."""
    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    return [
        float(inits[n.input[1]])
        for n in graph.node
        if n.op_type == 'QuantizeLinear' and n.input[0] not in inits
    ]


@pytest.fixture(scope='module')
def model_copy(ham_model, ham, tmp_path_factory):
    folder = tmp_path_factory.mktemp('variants')
    for name in ('model.fp32.onnx', 'model_card.json', 'split.csv', 'heldout.csv', 'gate.json'):
        shutil.copy(ham_model / name, folder / name)
    return folder


@pytest.mark.slow
def test_flavours_and_fp16_are_built_and_recorded(model_copy, ham_model, sample_frames):
    build_variants(
        model_copy,
        VariantConfig(
            backends=('onnxruntime', 'tensorrt'),
            calibration_images=32,
            calibration_method='minmax',
        ),
    )
    model = onnx.load(str(model_copy / 'model.fp16.onnx'))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    u8 = {t.data_type for t in onnx.load(str(model_copy / 'model.int8-u8.onnx')).graph.initializer}
    s8 = onnx.load(str(model_copy / 'model.int8-s8.onnx')).graph
    inits = {t.name: numpy_helper.to_array(t) for t in s8.initializer}
    s8_zero = [
        inits[n.input[2]] for n in s8.node if n.op_type == 'QuantizeLinear' and len(n.input) > 2
    ]
    assert len(s8_zero) > 20
    assert onnx.TensorProto.UINT8 in u8  # asymmetric uint8 activations for the CPU
    assert all(z.dtype == np.int8 and not z.any() for z in s8_zero)  # symmetric int8 for TRT
    float_weights = {t.name for t in s8.initializer if t.data_type == onnx.TensorProto.FLOAT}
    kept = [
        n
        for n in s8.node
        if n.op_type == 'Conv' and n.input[1] in float_weights and n.output[0] != 'cam'
    ]
    assert len(kept) == 6  # MobileNetV2 blocks 0-1 stay in float, the rest is int8
    card = (model_copy / 'model_card.json').read_text()
    assert '"flavour": "s8"' in card and '"calibration_images": 32' in card
    # what the builder made NOW, against fp32 on the 64 held-out sample frames
    frames = sample_frames[0]
    fp32 = Classifier(model_copy, 'fp32').classify(frames)[0]
    assert_agrees(fp32, Classifier(model_copy, 'fp16').classify(frames)[0], 0.98, 0.05, 0.005)
    int8 = Classifier(model_copy, 'int8').classify(frames)[0]
    # The INT8 made NOW (32 min-max calibration images) against the shipped INT8 (the
    # builder's defaults), both against FP32 on the same 64 frames: no worse than twice the
    # shipped file's distance from FP32, decisions agreeing as often within 5 frames.
    shipped = Classifier(ham_model, 'int8').classify(frames)[0]
    assert_no_worse_than(fp32, int8, shipped)
    card = ModelCard.load(model_copy)
    batch = prepare_batch(frames, card.preprocessing, 1)
    session = ort.InferenceSession(str(model_copy / 'model.int8-s8.onnx'))  # TensorRT's file
    s8_rule, _ = card.rule('model.int8-s8.onnx')  # its own calibration, the card's point
    s8 = score(session.run(['logits'], {'image': batch})[0], s8_rule)
    assert_no_worse_than(fp32, s8, shipped)


def assert_no_worse_than(fp32, fresh, shipped):
    """`fresh` (built with 32 min-max images) ranks the frames as FP32 does about as well as the
    shipped INT8 (the builder's defaults) does, and decides like FP32 on >= 90 % of them."""
    from scipy.stats import spearmanr

    rho = {
        k: spearmanr(s.probability, fp32.probability)[0]
        for k, s in (('fresh', fresh), ('shipped', shipped))
    }
    assert rho['fresh'] >= rho['shipped'] - 0.02, rho
    assert np.mean(fresh.decision == fp32.decision) >= 0.90


@pytest.mark.slow
def test_entropy_calibration_is_not_minmax(model_copy):
    def int8_scales(method):
        config = VariantConfig(
            precisions=('int8',),
            calibration_images=32,
            calibration_method=method,
            histogram_bins=512,  # the KL search is quadratic in the bins (2048: 110 s here)
        )
        build_variants(model_copy, config)
        return _activation_scales(model_copy / 'model.int8-u8.onnx')

    minmax, entropy = int8_scales('minmax'), int8_scales('entropy')
    assert len(minmax) == len(entropy) > 20
    narrower = sum(e < m * 0.99 for m, e in zip(minmax, entropy))
    assert narrower > len(minmax) // 4, 'entropy clipped no more ranges than min-max'


def test_calibration_never_uses_heldout_images(ham_model, ham):
    import csv

    from training.variants import calibration_paths

    held = {r['path'] for r in csv.DictReader((ham_model / 'heldout.csv').open())}
    paths = calibration_paths(ham_model, None, 300, seed=0)
    assert len(paths) == 300 and not {str(p) for p in paths} & held


def test_latency_rounds_interleave_every_engine():
    order = []
    calls = {k: (lambda k=k: order.append(k) or float(len(order))) for k in 'abc'}
    times = interleaved_ms(calls, rounds=4, block=1, settle=1)
    assert {k: len(v) for k, v in times.items()} == {'a': 4, 'b': 4, 'c': 4}
    runs = [order[i : i + 2] for i in range(0, len(order), 2)]  # settle + timed, per engine
    assert all(r[0] == r[1] for r in runs)  # one unkept call after every switch
    rounds = [''.join(r[0] for r in runs[i : i + 3]) for i in range(0, len(runs), 3)]
    assert all(sorted(r) == ['a', 'b', 'c'] for r in rounds)  # every engine once a round
    assert len({r[0] for r in rounds}) == 3  # the starting engine rotates
    kept = [i + 2.0 for i in range(0, len(order), 2) if order[i] == 'a']  # 2nd call of each run
    assert times['a'] == kept
