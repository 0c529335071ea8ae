"""A small real training run: a few hundred HAM10000 images -> ONNX + model card (CI-sized).

The run has 3 heads, averages 2 test-time views and refers its 20 % most ambiguous frames, so the
K > 1 and TTA paths go through export, variants and the inference node here (K = 1 is the
shipped model, tested everywhere).
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from skin_screening.core.model_card import ModelCard
from skin_screening.core.postprocess import UNCERTAINTY_SCORES
from skin_screening.core.preprocess import load_rgb, prepare

from tests.conftest import WEIGHTS_05
from training.config import load_config
from training.train import run_training


def _auc_z(report: dict) -> float:
    """z of ROC-AUC against 0.5 under the null (no ranking) for this many cancers/others."""
    n1 = report['positives']
    n0 = report['n'] - n1
    return (report['roc_auc'] - 0.5) / ((n0 + n1 + 1) / (12 * n0 * n1)) ** 0.5


@pytest.mark.slow
def test_training_writes_onnx_card_and_splits(small_run):
    card = ModelCard.load(small_run)
    assert card.files['model.fp32.onnx']['max_abs_diff_vs_keras'] <= 1e-4
    assert card.files['model.fp32.onnx']['sha256'] and card.data['mapping'] == 'ham10000'
    assert len(card.metrics['cv_folds']) == 2
    # The folds' test images ranked above chance, significantly (NaN fails too): a one-sided
    # Mann-Whitney test per fold (its null variance), combined over the folds (Stouffer).
    z = [_auc_z(f['at_threshold']) for f in card.metrics['cv_folds']]
    assert sum(z) / len(z) ** 0.5 > 2.33, z  # p < 0.01
    assert card.decision.temperature > 0 and 0 < card.decision.threshold < 1
    assert card.heads == 3 and card.decision.referral_threshold > 0 and card.decision.views == 2
    assert card.decision.referral_score == 'ambiguity'
    assert card.training['cam_vs_gradcam']['pearson_median'] > 0.99
    assert card.metrics['holdout']['sparsity']['pruned_kernels'] == pytest.approx(0.5, abs=0.01)
    # counted here, in the exported graph, not taken from the card: the pruned (fine-tuned)
    # kernels are half exact zeros, the frozen front has none
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(small_run / 'model.fp32.onnx')).graph
    zeros = [np.mean(numpy_helper.to_array(t) == 0) for t in graph.initializer if len(t.dims) == 4]
    assert sum(abs(z - 0.5) < 0.02 for z in zeros) >= 5 and min(zeros) < 0.01
    folds = [f['uncertainty'] for f in card.metrics['cv_folds']]
    # the referral bound was chosen on validation for 80 % coverage: the scored fold keeps ~80 %
    assert all(abs(u['coverage'] - 0.8) < 0.1 for u in folds), [u['coverage'] for u in folds]
    assert all(u['curves']['entropy'][0]['coverage'] == 1.0 for u in folds)
    assert all(np.isfinite(u[f'error_auroc_{s}']) for u in folds for s in UNCERTAINTY_SCORES)
    # entropy ranks the errors above chance (measured 0.80 and 0.69 on the two folds)
    assert np.mean([u['error_auroc_entropy'] for u in folds]) > 0.55
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
    from tests.nodes_helpers import diagnose_frames, model_with_variants

    model = model_with_variants(small_run, tmp_path / 'model', 'int8')
    card = ModelCard.load(model)
    got, cams = diagnose_frames(
        model, sample_frames[0][:12], ros_env, tmp_path, precision='int8', publish_cam=True
    )
    assert [d.header.stamp.sec for d in got] == list(range(1, 13)) and len(cams) >= 11
    assert {(c.width, c.height, c.encoding) for c in cams} == {(224, 224, 'rgb8')}
    assert {c.header.stamp.sec for c in cams} <= set(range(1, 13))
    assert all(d.precision == 'int8' and np.isfinite(d.epistemic) for d in got)
    assert all(0.0 <= d.epistemic <= d.entropy + 1e-6 for d in got)
    bound = card.decision.referral_threshold
    assert all(d.referral_threshold == pytest.approx(bound, rel=1e-6) for d in got)
    assert {d.referral_score for d in got} == {'ambiguity'}
    assert all(0.0 < d.ambiguity <= 1.0 for d in got)
    for d in got:  # float32 fields: skip the (unlikely) frames within rounding of the bound
        if abs(d.ambiguity - bound) > 1e-5:
            assert (d.label == 'refer') == (d.ambiguity > bound), (d.ambiguity, bound, d.label)


@pytest.mark.slow
def test_heldout_lesions_are_not_in_training_folds(small_run, ham):
    """Checked against HAM10000's own metadata (the lesion of every image), not against the
    group column the training code wrote into both files: no lesion has an image in
    heldout.csv and another in a training fold of split.csv."""
    import csv

    with (ham / 'HAM10000_metadata.csv').open() as f:
        lesion = {r['image_id']: r['lesion_id'] for r in csv.DictReader(f)}

    def lesions(name, keep=lambda row: True):
        with (small_run / name).open() as f:
            return {lesion[Path(r['path']).stem] for r in csv.DictReader(f) if keep(r)}

    held = lesions('heldout.csv')
    trained = lesions('split.csv', lambda r: r['fold'] != '0')
    assert held and trained and not held & trained


def test_each_fold_model_chose_on_its_own_training_folds(small_run):
    """The run's record of what chose each fold's stopping point, calibration, threshold and
    referral bound: the checker finds no image of a fold among its choosers; both folds have
    choosers, and each fold's are in the other fold."""
    import csv

    from training.choosing import records, violations

    assert violations(small_run) == []
    (body,) = [r for r in records(small_run) if r['stage'] == 'fold-validation']
    with (small_run / 'split.csv').open() as f:
        fold = {Path(r['path']).stem: r['fold'] for r in csv.DictReader(f)}
    assert sorted(body['folds']) == ['0', '1']
    for k, ids in body['folds'].items():
        assert len(ids) > 10 and {fold[i] for i in ids} == {str(1 - int(k))}


@pytest.mark.slow
def test_export_refuses_a_model_that_does_not_match_keras(tmp_path, ham):
    from training.config import ModelConfig
    from training.export import export_verified
    from training.model import TrainingError, build_model

    model = build_model(ModelConfig(alpha=0.5, weights=str(WEIGHTS_05)))
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
            'train.tta_views=2',
            'model.input_size=96',
            'model.alpha=0.5',
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


@pytest.mark.slow
def test_result_plots_the_uncertainty_of_a_training_run(small_run):
    from result import main

    assert main(['--training', str(small_run)]) == 0
    assert (small_run / 'uncertainty.png').stat().st_size > 10_000
