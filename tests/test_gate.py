"""The unassessable-frame gate: real engines, real photographs, synthetic bad frames."""

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from skin_screening.core.classifier import Classifier
from skin_screening.core.gate import REASONS, GateError, load_gate
from skin_screening.core.model_card import ModelCard
from skin_screening.core.postprocess import NOT_A_LESION, REFER, UNASSESSABLE

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
    flagged = np.array([bool(r) for r in scores.reasons])
    assert flagged.mean() >= 0.95  # the gate's verdict
    # what it decides: nothing, unless a photo it does not know reaches the threshold (REFER)
    unknown = np.array(scores.reasons) == NOT_A_LESION
    refer = unknown & (scores.probability >= fp32.rule.threshold)
    expected = np.where(refer, REFER, UNASSESSABLE)
    assert scores.decision[flagged].tolist() == expected[flagged].tolist()


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


def test_the_non_lesion_figures_of_the_card_are_measured_again(ham_model, fp32):
    """The card's non-lesion figures (training/gate.py: photographs, their parts, synthetic
    frames) re-measured through the shipped FP32 engine and gate: the same images flagged,
    for the same reasons, and >= 95 % of them (the goal). The held-out figure is re-measured
    in test_engines."""
    from collections import Counter

    pytest.importorskip('skimage', reason='scikit-image ships the photographs')
    photos, parts = gate_sets.non_lesion_photos(0)
    sets = {
        'photographs': photos,
        'photograph parts': parts,
        'synthetic': gate_sets.synthetic_frames(0),
    }
    report = ModelCard.load(ham_model).gate['evaluation']['model.fp32.onnx']
    flagged = 0
    for name, frames in sets.items():
        scores, _ = fp32.classify(frames)
        reasons = [r for r in scores.reasons if r]
        assert (len(frames), len(reasons)) == (report[name]['images'], report[name]['flagged'])
        assert Counter(reasons) == Counter(report[name]['reasons']), name
        flagged += len(reasons)
    assert flagged / sum(len(f) for f in sets.values()) >= 0.95


def test_the_gate_costs_little_beside_the_engine(ham_model, sample_frames):
    """The goal itself (<= 10 % of the engine's time), as benchmarks/gate_cost.py defines it
    (one engine thread, single frames): the median over 30 frames of each frame's own ratio.
    Gate and engine, both on one thread and timed back to back, slow alike on a loaded machine
    (measured here: 5-6 %; with two engine threads the ratio read 11 % on an idle machine and
    5 % with the other core busy: that would test the load, not the gate)."""
    clf = Classifier(ham_model, 'fp32', threads=1)
    ratios = []
    for frame in sample_frames[0][:30]:
        # each the fastest of 3 runs: a preemption by the other worker's process (11.1 % read
        # once with two test workers) is not the gate's cost
        runs = [(clf.classify([frame])[1], clf.gate_ms) for _ in range(3)]
        ratios.append(min(g for _, g in runs) / min(ms for ms, _ in runs))
    clf.close()
    assert np.median(ratios) <= 0.10, f'gate {np.median(ratios):.1%} of the engine time'


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


@pytest.mark.ros
def test_a_camera_the_gate_rejects_is_said_on_a_latched_status(ros_env, tmp_path, ham_model):
    """Across processes: frames the gate flags (dark ones here) turn the gate's latched status
    WARN, then ERROR, naming the reason and what to do; a listener gets each change."""
    from tests.nodes_helpers import diagnose_frames

    dark = [gate_sets.synthetic_frames()[0]] * 30  # black: 'too dark'
    statuses = []
    got, _ = diagnose_frames(ham_model, dark, ros_env, tmp_path, gate=statuses)
    assert len(got) == 30 and all(d.unassessable_reason == 'too dark' for d in got)
    levels = [s.level for s in statuses]
    # OK from the start (latched), ERROR once 15 frames are in, every one of them flagged
    assert levels == [DiagnosticStatus.OK, DiagnosticStatus.ERROR], levels
    assert "mostly 'too dark': more light on the skin" in statuses[-1].message


def test_a_clinical_folder_without_labels_is_refused_before_any_work(ham_model, tmp_path):
    from training.data import DataError
    from training.gate import fit_and_judge

    with pytest.raises(DataError, match='has no labels.csv'):
        fit_and_judge(ham_model, tmp_path)
