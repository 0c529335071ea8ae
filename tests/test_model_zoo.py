"""Issue 8: other models through the same pipeline: compute report, pruning, distillation, and
the compact CNN (a distilled student) in the inference node."""

import numpy as np
import pytest

from tests.conftest import REPO
from training.complexity import complexity, mac_count, parameter_count


def _tiny_onnx(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), 'w')
    fc = numpy_helper.from_array(rng.standard_normal((8, 2)).astype(np.float32), 'fc')
    nodes = [
        helper.make_node('Conv', ['x', 'w'], ['c'], pads=[1, 1, 1, 1]),
        helper.make_node('GlobalAveragePool', ['c'], ['p']),
        helper.make_node('Flatten', ['p'], ['f']),
        helper.make_node('MatMul', ['f', 'fc'], ['y']),
    ]
    graph = helper.make_graph(
        nodes,
        'tiny',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', 3, 10, 10])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['N', 2])],
        [w, fc],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_macs_and_parameters_come_from_the_graph(tmp_path, ham_model):
    tiny = _tiny_onnx(tmp_path / 'tiny.onnx')
    assert mac_count(tiny) == 8 * 10 * 10 * 27 + 8 * 2
    assert parameter_count(tiny) == 8 * 27 + 16
    shipped = complexity(ham_model.parent / 'mobilenetv2-a0.5/model.fp32.onnx')
    assert 94 < shipped['mmacs'] < 98 and 0.6e6 < shipped['parameters'] < 0.75e6  # Keras: 97 M
    paper = complexity(ham_model / 'model.fp32.onnx')  # the default: alpha 1.0
    assert 295 < paper['mmacs'] < 302 and 2.2e6 < paper['parameters'] < 2.3e6  # Keras: 300 M
    # (Keras' counts include the 1000-class top; ours have one logit)


def test_pruning_reaches_the_target_on_schedule_and_keeps_zeros():
    import keras

    from training.prune import MagnitudePruner, sparsity

    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(16, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(4),
            keras.layers.Dense(1, name='logits'),
        ]
    )
    pruner = MagnitudePruner(model, 0.6, steps=50, ramp=0.5, every=5)
    schedule = [pruner.sparsity_at(s) for s in range(0, 30, 5)]
    assert schedule == sorted(schedule) and schedule[0] == 0 and schedule[-1] == pytest.approx(0.6)
    for _ in range(25):
        for kernel in pruner.kernels:  # an optimizer step moves every weight
            kernel.assign(np.asarray(kernel) + 0.01)
        pruner.after_step()
    assert pruner.at_target
    assert sparsity(model, model)['pruned_kernels'] == pytest.approx(0.6, abs=0.01)
    assert np.all(np.asarray(model.get_layer('logits').kernel) != 0)  # heads are not pruned


def test_distillation_loss_mixes_labels_and_softened_teacher():
    import tensorflow as tf

    from training.distill import distillation_loss

    logits = tf.constant([[0.5], [-1.0]])
    label, teacher = np.float32([1.0, 0.0]), np.float32([2.0, 1.0])
    plain = distillation_loss(0.5, 2.0)(tf.constant(label), logits).numpy()
    bce = tf.nn.sigmoid_cross_entropy_with_logits(label[:, None], logits)
    np.testing.assert_allclose(plain, bce.numpy()[:, 0], rtol=1e-6)
    targets = tf.constant(np.stack([label, teacher], 1), tf.float32)
    only_soft = distillation_loss(1.0, 2.0)(targets, logits).numpy()
    soft = tf.nn.sigmoid_cross_entropy_with_logits(tf.sigmoid(teacher[:, None] / 2.0), logits / 2)
    np.testing.assert_allclose(only_soft, 4.0 * soft.numpy()[:, 0], rtol=1e-5)


@pytest.mark.slow
def test_a_teacher_from_another_split_is_refused(small_run, ham):
    from training.config import load_config
    from training.data import grouped_folds, load_dataset
    from training.distill import teacher_logits
    from training.model import TrainingError

    cfg = load_config(small_run / 'config.yaml')
    data = load_dataset(cfg.data)
    fold = grouped_folds(data, cfg.split, cfg.seed)
    assert teacher_logits(small_run, data, fold, 0).shape == (len(data),)
    with pytest.raises(TrainingError, match='another split'):
        teacher_logits(small_run, data, 1 - fold, 0)


@pytest.mark.slow
@pytest.mark.ros
def test_distilled_compact_cnn_runs_in_the_node(small_run, ham, sample_frames, ros_env, tmp_path):
    from skin_screening.core.model_card import ModelCard

    from tests.nodes_helpers import diagnose_frames, model_with_variants
    from training.config import load_config
    from training.train import run_training

    cfg = load_config(
        REPO / 'training/configs/compact_cnn.yaml',
        [
            f'data.root={ham}',
            'data.limit=300',
            'split.folds=2',
            'split.only_folds=[0]',
            'train.finetune_epochs=1',
            'model.input_size=96',
            f'train.teacher_run={small_run}',
            f'out_dir={tmp_path / "runs"}',
            'export.check_images=8',
        ],
    )
    run = run_training(cfg)
    card = ModelCard.load(run)
    assert card.architecture.startswith('compact_cnn') and card.preprocessing.input_size == 96
    assert card.training['config']['train']['teacher_run'] == str(small_run)
    model = model_with_variants(run, tmp_path / 'model', 'fp16', 'int8')
    frames = sample_frames[0][:6]
    got, cams = diagnose_frames(
        model, frames, ros_env, tmp_path, precision='int8', publish_cam=True
    )
    assert [d.header.stamp.sec for d in got] == [1, 2, 3, 4, 5, 6]
    assert {d.model_id.split('@')[0] for d in got} == {'compact-cnn'}
    assert all(0.0 <= d.probability <= 1.0 and d.precision == 'int8' for d in got)
    assert {(c.width, c.height) for c in cams} == {(96, 96)}
