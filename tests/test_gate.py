"""The unassessable-frame gate: real engines, real photographs, synthetic bad frames."""

import numpy as np
import pytest
from skin_screening.core.classifier import Classifier
from skin_screening.core.gate import REASONS, GateError, load_gate
from skin_screening.core.model_card import ModelCard
from skin_screening.core.postprocess import UNASSESSABLE

from training import gate_sets


@pytest.fixture(scope='module')
def fp32(ham_model):
    clf = Classifier(ham_model, 'fp32', warmup_runs=0)
    yield clf
    clf.close()


def test_black_white_noise_and_blurred_frames_are_unassessable_with_a_reason(fp32, sample_frames):
    frames = gate_sets.synthetic_frames()
    frames += gate_sets.spoiled(sample_frames[0][:6])['blurred']
    scores, _ = fp32.classify(frames)
    assert (scores.decision == UNASSESSABLE).all(), scores.reasons
    assert set(scores.reasons) <= set(REASONS)
    assert scores.reasons[0] == 'too dark' and scores.reasons[-1] == 'blurred'


def test_photographs_that_are_not_lesions_are_unassessable(fp32):
    pytest.importorskip('skimage', reason='scikit-image ships the photographs')
    photos, _ = gate_sets.non_lesion_photos()
    scores, _ = fp32.classify(photos)
    assert (scores.decision == UNASSESSABLE).mean() >= 0.95


def test_lesion_images_pass_the_gate(fp32, sample_frames):
    scores, _ = fp32.classify(sample_frames[0])
    assert (scores.decision != UNASSESSABLE).mean() >= 0.95
    assert all(r == '' for r, d in zip(scores.reasons, scores.decision) if d != UNASSESSABLE)


def test_every_variant_has_its_own_gate_and_a_missing_one_is_refused(ham_model):
    card = ModelCard.load(ham_model)
    gates = [
        load_gate(ham_model, card, name) for name, i in card.files.items() if 'precision' in i
    ]
    assert all(g is not None and len(g.references) == 2 for g in gates)
    assert gates[0].references[0].mean.tolist() != gates[-1].references[0].mean.tolist()
    with pytest.raises(GateError, match='model.int4.onnx has no unassessable-frame gate'):
        load_gate(ham_model, card, 'model.int4.onnx')


def test_the_card_records_what_the_gate_measured(ham_model):
    """The acceptance figures as fitted (training/gate.py): >= 95 % of non-lesion images and
    bad frames flagged, <= 3 % of held-out HAM10000, <= 5 % of clinical photographs."""
    for file_name, report in ModelCard.load(ham_model).gate['evaluation'].items():
        bad = [report[k] for k in ('photographs', 'photograph parts', 'synthetic')]
        assert sum(r['flagged'] for r in bad) / sum(r['images'] for r in bad) >= 0.95, file_name
        assert report['heldout']['rate'] <= 0.03, file_name
        assert report['clinical (5 patient folds)']['rate'] <= 0.05, file_name
        for spoiled in ('blurred', 'underexposed', 'overexposed'):
            assert report[spoiled]['rate'] >= 0.95, (file_name, spoiled)


def test_the_gate_costs_little_beside_the_engine(fp32, sample_frames):
    """Median over 30 single frames: the gate's checks under a third of the engine time here
    (the timed goal, <= 10 %, is measured by benchmarks/gate_cost.py on a quiet machine)."""
    engine, gate = [], []
    for frame in sample_frames[0][:30]:
        _, ms = fp32.classify([frame])
        engine.append(ms)
        gate.append(fp32.gate_ms)
    assert np.median(gate) < np.median(engine) / 3


@pytest.mark.ros
def test_the_node_says_unassessable_and_never_alerts_on_it(
    ros_env, tmp_path, ham_model, sample_frames
):
    """Bad frames get Diagnosis UNASSESSABLE with a reason and feed no alert: with an alert
    level every judged frame reaches, the alert comes only at the 3rd LESION frame."""
    from skin_screening_msgs.msg import Alert, Diagnosis

    from tests.nodes_helpers import diagnose_frames

    bad = gate_sets.synthetic_frames()[:6]  # black, near-black, grey, near-white, white, noise
    alerts = []
    got, _ = diagnose_frames(
        ham_model,
        bad + list(sample_frames[0][:3]),  # the black frame also matches, at stamp 0
        ros_env,
        tmp_path,
        alerts=alerts,
        alert_window=3,
        alert_min_frames=3,
        alert_raise=1e-6,
        alert_clear=0.0,
    )
    by_sec = {d.header.stamp.sec: d for d in got}
    for sec in range(1, 7):
        assert by_sec[sec].decision == Diagnosis.UNASSESSABLE, sec
        assert by_sec[sec].label == 'unassessable' and by_sec[sec].unassessable_reason
    assert by_sec[1].unassessable_reason == 'too dark'
    assert all(by_sec[s].decision != Diagnosis.UNASSESSABLE for s in (7, 8, 9))
    assert [(a.level, a.header.stamp.sec, a.frames) for a in alerts] == [(Alert.SUSPICIOUS, 9, 3)]


def test_a_clinical_folder_without_labels_is_refused_before_any_work(ham_model, tmp_path):
    from training.data import DataError
    from training.gate import fit_and_judge

    with pytest.raises(DataError, match='has no labels.csv'):
        fit_and_judge(ham_model, tmp_path)
