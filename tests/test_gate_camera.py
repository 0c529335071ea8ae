"""Fitting the gate to the wearer's own camera (training/gate_camera.py) with a simulated camera
the model has never seen (training/new_camera.py): its frames are mostly 'not a lesion image'
before, assessable after, and what must stay unassessable still is."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from skin_screening.core.gate import GATE_FILE
from skin_screening.core.model_card import ModelCard
from skin_screening.core.preprocess import load_rgb

from training.new_camera import SimulatedCamera, recording_rows, write_camera_bag

pytestmark = pytest.mark.slow
CAMERA = SimulatedCamera()
KEPT = ('model.fp32.onnx',)  # each variant is fitted by the same loop (benchmark: all four)


def heldout_rows(model_dir: Path, n: int) -> list[dict]:
    with (model_dir / 'heldout.csv').open() as f:
        rows = list(csv.DictReader(f))
    return [rows[i] for i in np.random.default_rng(1).choice(len(rows), n, replace=False)]


@pytest.fixture(scope='module')
def fitted(ham_model, tmp_path_factory):
    """(the shipped model, a copy fitted to a 40 s recording of the camera, that bag)."""
    from training.gate_camera import fit_camera

    tmp = tmp_path_factory.mktemp('camera')
    copy = keep_variants(ham_model, tmp / ham_model.name, KEPT)
    bag = tmp / 'wearer'
    assert write_camera_bag(bag, recording_rows(ham_model, 400), CAMERA) == 400
    fit_camera(copy, bag)
    return ham_model, copy, bag


def keep_variants(model_dir: Path, dest: Path, kept: tuple[str, ...]) -> Path:
    """A copy of the model folder with only the `kept` variant files (the fit costs one pass
    over the recording and the probe sets per variant)."""
    shutil.copytree(model_dir, dest)
    card = ModelCard.load(dest)
    gates = json.loads((dest / GATE_FILE).read_text())
    for name in [n for n, info in card.files.items() if 'precision' in info and n not in kept]:
        del card.files[name], gates[name]
        (dest / name).unlink()
    (dest / GATE_FILE).write_text(json.dumps(gates) + '\n')
    card.add_file(dest / GATE_FILE)
    card.save(dest)
    return dest


def flagged(model_dir: Path, frames: list[np.ndarray], precision: str = 'fp32') -> np.ndarray:
    from skin_screening.core.classifier import Classifier

    clf = Classifier(model_dir, precision, warmup_runs=0)
    try:
        return np.array([bool(r) for r in clf.classify(frames)[0].reasons])
    finally:
        clf.close()


def test_the_card_records_the_bag_and_each_variant_gets_a_camera_domain(fitted):
    from training.gate_camera import bag_sha256

    shipped, copy, bag = fitted
    card = ModelCard.load(copy)
    record = card.gate['camera']
    assert record['sha256'] == bag_sha256(bag) and len(record['sha256']) == 2  # mcap + yaml
    assert record['frames'] == 400 and record['topic'] == '/image_raw'
    used = record['frames_used']
    assert used['fit'] + used['bound'] >= 300 and sum(used.values()) <= 400
    card.verify(copy / GATE_FILE)
    gates = json.loads((copy / GATE_FILE).read_text())
    before = json.loads((shipped / GATE_FILE).read_text())
    assert set(gates) == set(KEPT) == set(record['rates'])
    for name, gate in gates.items():
        domains = [r['domain'] for r in gate['references']]
        assert domains == [r['domain'] for r in before[name]['references']] + ['camera']
        assert {k: v for k, v in gate.items() if k != 'references'} == {
            k: v for k, v in before[name].items() if k != 'references'
        }  # quality limits untouched
    for rates in record['rates'].values():
        assert rates['judged frames after']['rate'] < rates['judged frames before']['rate']
        for name in ('photographs', 'photograph parts', 'synthetic'):
            assert rates[f'{name} after']['rate'] >= 0.95, name


def test_unseen_frames_of_the_camera_pass_and_nothing_new_is_let_through(fitted):
    """Held-out images through the camera (noise drawn afresh): flagged before, assessable
    after; the same images as taken: fitting only adds a domain, so it flags nothing new."""
    shipped, copy, _ = fitted
    rows = heldout_rows(shipped, 60)
    taken = [load_rgb(r['path']) for r in rows]
    through = [CAMERA(im, 10_000 + i) for i, im in enumerate(taken)]
    before, after = flagged(shipped, through), flagged(copy, through)
    assert before.mean() >= 0.25 and after.mean() <= 0.05, (before.mean(), after.mean())
    assert not (flagged(copy, taken) & ~flagged(shipped, taken)).any()


def test_a_recording_too_short_to_fit_is_refused_with_what_to_do(ham_model, tmp_path):
    from training.data import DataError
    from training.gate_camera import fit_camera

    copy = tmp_path / ham_model.name
    shutil.copytree(ham_model, copy)
    bag = tmp_path / 'short'
    write_camera_bag(bag, recording_rows(ham_model, 60), CAMERA)
    before = (copy / GATE_FILE).read_bytes()
    with pytest.raises(DataError, match='record longer over skin'):
        fit_camera(copy, bag)
    assert (copy / GATE_FILE).read_bytes() == before  # nothing written


@pytest.mark.ros
def test_diagnostics_warn_on_a_bag_of_the_camera_before_fitting_and_stay_ok_after(
    fitted, ros_env, tmp_path
):
    """Across processes (replay launch: bag player, inference, recorder): the inference node's
    /diagnostics reach WARN (or ERROR) naming 'not a lesion image' within its window on a bag
    of the camera; the same bag through the fitted copy stays OK, its unassessable share low."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from skin_screening.replay import replay

    from tests.nodes_helpers import probe_node

    shipped, copy, _ = fitted
    bag = tmp_path / 'session'
    write_camera_bag(bag, heldout_rows(shipped, 40), CAMERA)
    mine, seen = f'/replay_{os.getpid()}_', {}

    def on_array(msg):
        for s in msg.status:
            values = {kv.key: kv.value for kv in s.values}
            space = values.get('namespace', '')
            if s.name.endswith(': inference') and space.startswith(mine):
                share = float(values['unassessable_share'])
                seen.setdefault(space, []).append(
                    (s.level[0], values['unassessable_reason'], share)
                )

    with probe_node() as node:  # spins in a thread of its own
        node.create_subscription(DiagnosticArray, '/diagnostics', on_array, 50)
        # each replay under a namespace of its own, at the bag's 10 Hz: 4 s of periodic status
        for model_dir in (shipped, copy):
            replay(
                bag, model_dir, 'fp32', 'onnxruntime', tmp_path / f'replay-{len(seen)}',
                rate=1.0, env=ros_env, without=('findings', 'power_monitor'),
            )  # fmt: skip
    assert len(seen) == 2, list(seen)
    before, after = seen.values()  # in the order they first spoke
    assert any(
        level >= DiagnosticStatus.WARN[0] and reason == 'not a lesion image' and share >= 0.25
        for level, reason, share in before
    ), before
    assert after and max(share for _, _, share in after) < 0.25, after
    assert all(level == DiagnosticStatus.OK[0] for level, _, _ in after), after


def test_a_camera_bag_that_is_not_one_is_one_clear_error(ham_model, tmp_path):
    """The command line: a missing path and a file that is no bag each end in one line and
    exit code 2, the model folder untouched."""
    import subprocess
    import sys

    from tests.conftest import REPO

    before = (ham_model / 'model_card.json').read_bytes()
    (tmp_path / 'bad.mcap').write_text('not a bag')
    for bag, says in ((tmp_path / 'missing', 'not found'), (tmp_path / 'bad.mcap', 'cannot open')):
        cmd = [sys.executable, '-m', 'training', 'gate', str(ham_model), '--camera-bag', str(bag)]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr.startswith('error: ') and says in done.stderr
        assert 'Traceback' not in done.stderr
    assert (ham_model / 'model_card.json').read_bytes() == before
