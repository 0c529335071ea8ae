"""Lesion identity (core/lesions.py) on generated wearable sessions of real held-out images."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from skin_screening.core.bags import LabelledFrame
from skin_screening.core.lesions import LesionTracker, TrackingConfig
from skin_screening.core.postprocess import sigmoid
from skin_screening.core.preprocess import load_rgb

from tests.conftest import REPO
from training.wearable import SKIN, PassPlan, plan_visits, session_frames


@pytest.fixture(scope='module')
def images(ham_model, ham) -> list[LabelledFrame]:
    """Eight held-out lesions, one image each (distinct lesion groups)."""
    with (ham_model / 'heldout.csv').open() as f:
        rows = [r for r in csv.DictReader(f) if r['domain'] == 'dermoscopic']
    picked, seen = [], set()
    for r in rows:
        if r['group'] not in seen:
            seen.add(r['group'])
            rgb = load_rgb(REPO / r['path'])
            picked.append(LabelledFrame(rgb, int(r['y']), r['label'], r['path'], r['group']))
        if len(picked) == 8:
            return picked
    raise AssertionError('fewer than 8 held-out lesions')


def track(frames, tracker: LesionTracker, rate_hz: float = 30.0, skin_assessed: bool = False):
    """(pass, lesion id) per frame; skin frames unassessable unless `skin_assessed`."""
    out = []
    for i, (frame, k) in enumerate(frames):
        assessed = skin_assessed or frame.label != SKIN
        out.append((k, tracker.observe(int(i * 1e9 / rate_hz), frame.rgb, 0.3, 0.1, assessed)))
    return out


def test_each_pass_is_one_lesion_and_no_id_spans_two_passes(images):
    frames = list(session_frames(images, 8, PassPlan(revisits=0.0), seed=3))
    tracker = LesionTracker()
    tracked = track(frames, tracker)
    by_pass: dict[int, set[str]] = {}
    for k, lesion in tracked:
        if k >= 0 and lesion:
            by_pass.setdefault(k, set()).add(lesion)
    # one id per pass, a different one for every pass (no descriptor: nothing merges)
    assert all(len(ids) == 1 for ids in by_pass.values()), by_pass
    assert len({next(iter(ids)) for ids in by_pass.values()}) == len(by_pass) == 8
    assert all(lesion == '' for k, lesion in tracked if k < 0)  # skin frames: no id
    # a pass's first frames wait for min_frames, then the lesion counts them all
    sizes = sorted(sum(1 for kk, _ in tracked if kk == k) for k in range(8))
    assert sorted(les.frames for les in tracker.lesions.values()) == sizes


def test_skin_the_gate_misses_still_breaks_the_pass(images):
    """Skin frames assessed as lesion images: a lesion change is still a new id."""
    frames = list(session_frames(images[:4], 4, PassPlan(revisits=0.0), seed=5))
    tracked = track(frames, LesionTracker(), skin_assessed=True)
    ids = {k: {les for kk, les in tracked if kk == k and les} for k in range(4)}
    flat = [next(iter(v)) for v in ids.values() if len(v) == 1]
    assert len(flat) == 4 and len(set(flat)) == 4, ids


def test_a_pause_longer_than_the_gap_ends_a_pass(images):
    tracker = LesionTracker(TrackingConfig(max_gap_s=0.5))
    frames = [f.rgb for f, k in session_frames(images[:1], 1, PassPlan(revisits=0.0)) if k == 0]
    first = [tracker.observe(int(i * 33e6), rgb, 0.2) for i, rgb in enumerate(frames[:10])]
    later = [tracker.observe(int(2e9 + i * 33e6), rgb, 0.2) for i, rgb in enumerate(frames[10:])]
    assert first[-1] and later[-1] and first[-1] != later[-1]


def test_a_transition_of_fewer_than_min_frames_starts_no_lesion(images):
    tracker = LesionTracker(TrackingConfig(min_frames=3))
    (frame, _), *_ = [x for x in session_frames(images[:1], 1) if x[1] == 0]
    assert tracker.observe(0, frame.rgb, 0.9) == ''
    assert tracker.observe(int(2e9), images[1].rgb, 0.9) == ''
    assert tracker.lesions == {}


def test_a_merge_never_dilutes_a_suspicious_pass(images):
    """Re-identification joins a benign lesion and a suspicious pass: still suspicious."""
    tracker = LesionTracker(TrackingConfig(min_reid_similarity=0.9))
    same = np.ones(4, np.float32) / 2
    frames = [f.rgb for f, k in session_frames(images[:1], 1, PassPlan(dwell_s=(2, 2))) if k == 0]
    for i, rgb in enumerate(frames):  # 60 benign frames
        tracker.observe(int(i * 33e6), rgb, 0.05, descriptor=same)
    for i, rgb in enumerate(frames[:6]):  # a later pass, 6 suspicious frames
        tracker.observe(int(5e9 + i * 33e6), rgb, 0.8, descriptor=same)
    (lesion,) = tracker.lesions.values()
    assert len(lesion.passes) == 2 and lesion.frames == 66
    assert lesion.probability < 0.3  # fused over all frames
    assert lesion.suspicious(0.5)  # the suspicious pass decides
    assert not lesion.suspicious(0.9)


def test_without_a_descriptor_a_revisit_is_never_merged(images):
    plan = PassPlan(revisits=0.5)
    visits = plan_visits([im.group_id for im in images[:3]], 6, plan, np.random.default_rng(0))
    assert sum(v.revisit for v in visits) == 3 and len({v.lesion for v in visits}) == 3
    frames = list(session_frames(images[:3], 6, plan, seed=0))
    tracker = LesionTracker()
    truth: dict[str, set[str]] = {}
    for i, (frame, _) in enumerate(frames):
        lesion = tracker.observe(int(i * 1e9 / 30), frame.rgb, 0.3, assessed=frame.label != SKIN)
        if lesion:
            truth.setdefault(lesion, set()).add(frame.group_id)
    assert all(len(groups) == 1 for groups in truth.values()), truth  # no false merge
    assert len(tracker.lesions) >= 5  # passes apart unless they continue each other


def test_fused_probability_is_the_mean_logit(images):
    tracker = LesionTracker()
    frames = [f.rgb for f, k in session_frames(images[:1], 1) if k == 0][:4]
    for i, (rgb, p) in enumerate(zip(frames, [0.2, 0.4, 0.6, 0.9], strict=True)):
        tracker.observe(int(i * 33e6), rgb, p)
    (lesion,) = tracker.lesions.values()
    expected = sigmoid(np.mean([np.log(p / (1 - p)) for p in [0.2, 0.4, 0.6, 0.9]]))
    assert lesion.probability == pytest.approx(expected)
