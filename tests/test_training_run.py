"""A small real training run: a few hundred HAM10000 images -> ONNX + model card (CI-sized).

The run has 3 heads and refers its 20 % most uncertain frames, so the K > 1 path goes through
export, variants and the inference node here (K = 1 is the shipped model, tested everywhere).
"""

import json

import numpy as np
import onnxruntime as ort
import pytest
from skin_screening.core.model_card import ModelCard
from skin_screening.core.preprocess import load_rgb, prepare

from tests.conftest import WEIGHTS_05
from training.config import load_config
from training.train import run_training


@pytest.fixture(scope='module')
def small_run(ham, tmp_path_factory):
    if not WEIGHTS_05.is_file():
        pytest.skip(f'alpha 0.5 weights not found at {WEIGHTS_05}')
    out = tmp_path_factory.mktemp('training')
    config = load_config(
        None,
        [
            f'data.root={ham}',
            'data.limit=300',
            'split.folds=2',
            'train.views=2',
            'train.head_epochs=1',
            'train.finetune_epochs=1',
            f'model.weights={WEIGHTS_05}',
            f'out_dir={out}',
            f'cache_dir={out / "cache"}',
            'export.check_images=16',
            'model.heads=3',
            'train.referral_coverage=0.8',
        ],
    )
    return run_training(config)


@pytest.mark.slow
def test_training_writes_onnx_card_and_splits(small_run):
    card = ModelCard.load(small_run)
    assert card.files['model.fp32.onnx']['max_abs_diff_vs_keras'] <= 1e-4
    assert card.files['model.fp32.onnx']['sha256'] and card.data['mapping'] == 'ham10000'
    assert len(card.metrics['cv_folds']) == 2
    assert 0.0 <= card.metrics['cv_summary']['at_threshold']['roc_auc']['mean'] <= 1.0
    assert card.decision.temperature > 0 and 0 < card.decision.threshold < 1
    assert card.heads == 3 and card.decision.referral_threshold > 0
    uncertainty = card.metrics['cv_folds'][0]['uncertainty']
    assert 0.5 < uncertainty['coverage'] <= 1.0 and uncertainty['curve'][0]['coverage'] == 1.0
    assert 0.0 <= uncertainty['error_auroc_epistemic'] <= 1.0
    config = (small_run / 'config.yaml').read_text()
    assert 'limit: 300' in config and 'seed: 1234' in config
    assert json.loads((small_run / 'metrics.json').read_text())['holdout']['fold'] == 0


@pytest.mark.slow
def test_exported_onnx_runs_real_images_with_dynamic_batch(small_run, ham):
    card = ModelCard.load(small_run)
    session = ort.InferenceSession(str(small_run / 'model.fp32.onnx'))
    assert session.get_inputs()[0].name == 'image' and session.get_outputs()[0].name == 'logits'
    images = sorted((ham / 'images').glob('*.jpg'))[:5]
    x = np.stack([prepare(load_rgb(p), card.preprocessing) for p in images])
    (logits,) = session.run(['logits'], {'image': x})
    assert logits.shape == (5, 3) and np.all(np.isfinite(logits))
    assert np.ptp(logits, axis=1).max() > 0  # the heads differ
    (cam,) = session.run(['cam'], {'image': x})  # class activation map: its mean is the logit
    assert cam.shape == (5, 3, 7, 7)
    np.testing.assert_allclose(cam.mean(axis=(2, 3)), logits, atol=1e-5)


@pytest.mark.slow
@pytest.mark.ros
def test_multi_head_model_through_variants_and_node(small_run, sample_frames, ros_env, tmp_path):
    import shutil

    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from skin_screening.core.frames import rgb_to_fields
    from skin_screening_msgs.msg import Diagnosis
    from std_msgs.msg import Header

    from tests.nodes_helpers import node_process, probe_node, stop, wait_for
    from training.variants import VariantConfig, build_variants

    model = tmp_path / 'model'
    shutil.copytree(small_run, model)
    build_variants(model, VariantConfig(precisions=('int8',), calibration_images=40))
    card = ModelCard.load(model)
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    proc = node_process(
        'inference_node',
        'inference',
        ros_env,
        tmp_path / 'node.log',
        model_dir=str(model),
        precision='int8',
        reliable=True,
        queue_size=20,
        publish_cam=True,
    )
    try:
        with probe_node() as node:
            got = []
            node.create_subscription(Diagnosis, 'diagnosis', got.append, reliable)
            cams = []
            node.create_subscription(Image, 'diagnosis/cam', cams.append, qos_profile_sensor_data)
            pub = node.create_publisher(Image, 'image_raw', reliable)
            wait_for(lambda: pub.get_subscription_count() > 0, 60, 'the inference node')
            for i, frame in enumerate(sample_frames[0][:12]):
                stamp = Header().stamp.__class__(sec=i + 1)
                pub.publish(Image(header=Header(stamp=stamp), **rgb_to_fields(frame)))
            wait_for(lambda: len(got) == 12 and len(cams) >= 11, 60, '12 diagnoses, CAMs')
    finally:
        stop(proc)
    assert [d.header.stamp.sec for d in got] == list(range(1, 13))
    assert {(c.width, c.height, c.encoding) for c in cams} == {(224, 224, 'rgb8')}
    assert {c.header.stamp.sec for c in cams} <= set(range(1, 13))
    assert all(d.precision == 'int8' and np.isfinite(d.epistemic) for d in got)
    assert all(0.0 <= d.epistemic <= d.entropy + 1e-6 for d in got)
    bound = card.decision.referral_threshold
    assert all(d.referral_threshold == pytest.approx(bound, rel=1e-6) for d in got)
    for d in got:  # float32 fields: skip the (unlikely) frames within rounding of the bound
        if abs(d.entropy - bound) > 1e-5:
            assert (d.label == 'refer') == (d.entropy > bound), (d.entropy, bound, d.label)


@pytest.mark.slow
def test_heldout_lesions_are_not_in_training_folds(small_run):
    import csv

    split = list(csv.DictReader((small_run / 'split.csv').open()))
    held = {r['group'] for r in csv.DictReader((small_run / 'heldout.csv').open())}
    trained = {r['group'] for r in split if r['fold'] != '0'}
    assert held and not held & trained


@pytest.mark.slow
def test_export_refuses_a_model_that_does_not_match_keras(tmp_path, ham):
    from training.config import ModelConfig
    from training.export import export_verified
    from training.model import TrainingError, build_model

    model = build_model(ModelConfig(weights=str(WEIGHTS_05)))
    x = np.stack(
        [prepare(load_rgb(p), card_spec()) for p in sorted((ham / 'images').glob('*.jpg'))[:4]]
    )
    path = tmp_path / 'model.fp32.onnx'
    assert export_verified(model.full, path, x, 224, 17, 1e-4) <= 1e-4
    with pytest.raises(TrainingError, match='artifact not written'):
        export_verified(model.full, path, x, 224, 17, -1.0)
    assert not path.exists()


def card_spec():
    from skin_screening.core.preprocess import Preprocessing

    return Preprocessing()


@pytest.mark.slow
def test_full_recipe_trains_from_augmented_images(ham, tmp_path):
    """The GPU path (tf.data augmentation, tf.distribute) runs end to end on a CPU, tiny."""
    if not WEIGHTS_05.is_file():
        pytest.skip(f'alpha 0.5 weights not found at {WEIGHTS_05}')
    config = load_config(
        None,
        [
            f'data.root={ham}',
            'data.limit=60',
            'split.folds=2',
            'train.recipe=full',
            'train.finetune_epochs=1',
            'train.batch_size=16',
            'model.input_size=96',
            f'model.weights={WEIGHTS_05}',
            f'out_dir={tmp_path}',
            'export.check_images=4',
        ],
    )
    run = run_training(config)
    card = ModelCard.load(run)
    assert card.preprocessing.input_size == 96
    assert card.metrics['cv_folds'][0]['best']['phase'] == 'full'
    assert card.files['model.fp32.onnx']['max_abs_diff_vs_keras'] <= 1e-4


def test_augmentation_keeps_the_frame_shape_and_range():
    from training.full import augment

    rng = np.random.default_rng(0)
    frame = np.random.default_rng(1).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    views = [augment(frame, rng) for _ in range(16)]
    assert {v.shape for v in views} <= {(150, 200, 3), (200, 150, 3)}
    assert all(v.dtype == np.uint8 for v in views)
    assert len({v.tobytes() for v in views}) == 16
