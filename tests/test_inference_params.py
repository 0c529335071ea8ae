"""The inference node's run-time parameters and decision rule, over real rclpy processes."""

import numpy as np
import pytest
from sensor_msgs.msg import Image
from skin_screening.core.classifier import Classifier
from skin_screening.core.frames import rgb_to_fields
from skin_screening.core.model_card import ModelCard
from skin_screening_msgs.msg import Diagnosis

from tests.nodes_helpers import (
    RELIABLE,
    answered,
    diagnose_frames,
    image_msg,
    node_process,
    probe_node,
    set_param,
    stop,
    wait_for,
)


@pytest.mark.ros
def test_refer_is_forced_through_the_node(ros_env, tmp_path, ham_model, sample_frames):
    """The shipped card refers nothing; a referral bound given as a parameter must make the node
    REFER exactly the frames whose referral score (the card's: entropy or ambiguity, computed
    here from the published probability, by hand) exceeds it, and decide the rest by the
    threshold."""
    bound = 0.45  # entropy is at most ln 2 = 0.693 nats; ambiguity at most 1
    got, _ = diagnose_frames(
        ham_model, sample_frames[0][:16], ros_env, tmp_path, referral_threshold=bound
    )
    labels = []
    for d in got:
        if d.label == 'unassessable':  # the gate decides first: neither REFER nor a class
            assert d.unassessable_reason
            continue
        p = float(np.clip(d.probability, 1e-7, 1 - 1e-7))
        logit = np.log(p / (1 - p)) - np.log(d.threshold / (1 - d.threshold))
        by_hand = {
            'entropy': -(p * np.log(p) + (1 - p) * np.log(1 - p)),
            'ambiguity': np.exp(-abs(logit)),
        }[d.referral_score]
        if abs(by_hand - bound) < 1e-4:
            continue  # float32 rounding at the bound
        expected = 'refer' if by_hand > bound else ('skin_cancer' if p >= d.threshold else 'other')
        assert d.label == expected, (p, d.referral_score, by_hand, d.label)
        labels.append(d.label)
    assert 'refer' in labels and {'other', 'skin_cancer'} & set(labels)


@pytest.mark.ros
def test_every_swappable_parameter_swaps_at_run_time(
    no_tensorrt_env, tmp_path, ham_model, sample_frames
):
    """precision, backend, operating_point, threshold, referral_threshold and tta_views change
    the running node's answers (expected values computed here with the same model, directly)."""
    from skin_screening.core.postprocess import DecisionRule

    frame = sample_frames[0][0]
    direct = Classifier(ham_model)
    one_view = float(direct.classify([frame])[0].probability[0])
    direct.rule = DecisionRule.from_dict(ham_model_rule(ham_model) | {'views': 2})
    two_views = float(direct.classify([frame])[0].probability[0])
    assert abs(one_view - two_views) > 1e-4  # the views do change this frame's score
    proc = node_process(
        'inference_node',
        'inference',
        no_tensorrt_env,
        tmp_path / 'log',
        model_dir=str(ham_model),
        reliable=True,
        queue_size=10,
    )
    got = []
    try:
        with probe_node() as node:
            node.create_subscription(Diagnosis, 'diagnosis', got.append, RELIABLE)
            pub = node.create_publisher(Image, 'image_raw', RELIABLE)
            wait_for(lambda: pub.get_subscription_count() >= 1, 60, 'the inference node')

            answered(node, pub, got, frame)  # both directions matched

            stamps = iter(range(1, 100))

            def answer():
                sec = next(stamps)
                pub.publish(image_msg(sec, **rgb_to_fields(frame)))
                wait_for(lambda: any(d.header.stamp.sec == sec for d in got), 30, 'a diagnosis')
                return next(d for d in got if d.header.stamp.sec == sec)

            points = ModelCard.load(ham_model).operating_points['points']
            d = answer()
            assert (d.precision, d.operating_point) == ('fp32', 'screening')
            assert d.threshold == pytest.approx(points['screening']['threshold'])
            assert set_param(node, 'operating_point', 'balanced').successful
            d = answer()
            assert d.operating_point == 'balanced'
            assert d.threshold == pytest.approx(points['balanced']['threshold'])
            refused = set_param(node, 'operating_point', 'lenient')
            assert not refused.successful and "unknown operating point 'lenient'" in refused.reason
            assert set_param(node, 'operating_point', '').successful  # the card's default
            assert set_param(node, 'precision', 'fp16').successful
            assert answer().precision == 'fp16'
            refused = set_param(node, 'backend', 'tensorrt')  # hidden here: refused, kept
            assert not refused.successful and 'TensorRT is not installed' in refused.reason
            assert answer().backend == 'onnxruntime'
            assert set_param(node, 'precision', 'fp32').successful
            assert set_param(node, 'threshold', 0.9).successful
            d = answer()
            assert d.threshold == pytest.approx(0.9) and d.operating_point == 'custom'
            assert set_param(node, 'referral_threshold', 0.01).successful
            d = answer()
            assert d.referral_threshold == pytest.approx(0.01) and d.label == 'refer'
            assert set_param(node, 'referral_threshold', -1.0).successful
            assert answer().probability == pytest.approx(one_view, abs=1e-5)
            assert set_param(node, 'tta_views', 2).successful
            assert answer().probability == pytest.approx(two_views, abs=1e-5)
    finally:
        stop(proc)


def ham_model_rule(model) -> dict:
    return ModelCard.load(model).decision.to_dict()
