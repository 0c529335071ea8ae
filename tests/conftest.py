"""Shared fixtures. Every ROS process a test starts is local-only and on its own ROS domain."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from skin_screening.core.model_card import DEFAULT_MODEL
from skin_screening.launching import ros_environment

# Any rclpy used in this process, and every child it starts, stays on this machine.
os.environ.update(ros_environment())
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'
HAM = SHARED / 'datasets' / 'ham10000'
HAM_FULLRES = SHARED / 'datasets' / 'ham10000_fullres_sample'
PAD = SHARED / 'datasets' / 'pad_ufes_20'
WEIGHTS_05 = (
    SHARED / 'weights' / 'mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224_no_top.h5'
)


def _worker_domains() -> itertools.cycle:
    """ROS domains 1..100 shared out among this run's xdist workers (worker k of n takes every
    n-th), from a random start so that two test runs on one machine rarely meet."""
    k = int(os.environ.get('PYTEST_XDIST_WORKER', 'gw0')[2:])
    n = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
    mine = list(range(1 + k, 101, n))
    start = random.Random(os.getpid()).randrange(len(mine))
    return itertools.cycle(mine[start:] + mine[:start])


_domains = _worker_domains()

# Session fixtures worth building once per run, and the test modules that use them: under
# xdist these modules run in one worker, which builds the fixture once (checked at collection).
SHARED_BUILDS = {
    'small_run': ('test_model_zoo', 'test_training_run'),
    'heldout_dermoscopy': ('test_engines', 'test_operating_points'),
}
MODULE_GROUP = {module: build for build, modules in SHARED_BUILDS.items() for module in modules}


def pytest_sessionstart(session):
    from skin_screening.bootstrap import ensure_messages

    ensure_messages(verbose=True)


def _group(module: str) -> str:
    return MODULE_GROUP.get(module, module)


@pytest.hookimpl(tryfirst=True)  # after pytest-randomly's shuffle
def pytest_collection_modifyitems(config, items):
    """Groups with more `slow` tests first, so that the longest start while the other worker
    works through the short ones; a module using a SHARED_BUILDS fixture must be listed there."""
    weight: dict[str, int] = {}
    for item in items:
        module = item.path.stem
        for build, modules in SHARED_BUILDS.items():
            if build in item.fixturenames and module not in modules:
                raise pytest.UsageError(f'{module} uses {build}: list it in SHARED_BUILDS')
        slow = item.get_closest_marker('slow') is not None
        weight[_group(module)] = weight.get(_group(module), 0) + slow
    items.sort(key=lambda item: -weight[_group(item.path.stem)])  # stable: order within kept


def pytest_xdist_make_scheduler(config, log):
    """xdist's scheduling by module (as --dist loadfile), the modules of a SHARED_BUILDS fixture
    as one unit (xdist's own loadgroup marks do not reach pytest 9.2's node ids)."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(Path(nodeid.split('::', 1)[0]).stem)

    return ModuleGroups(config, log)


@pytest.fixture
def ros_env(monkeypatch) -> dict[str, str]:
    """Environment for ROS child processes: localhost discovery and a domain of this test's own."""
    domain = str(next(_domains))
    for name, value in ros_environment(domain=domain).items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


@pytest.fixture
def no_tensorrt_env(ros_env, tmp_path) -> dict[str, str]:
    """ros_env for child processes in which `import tensorrt` fails, on any host (a Jetson or
    GPU workstation has it): a package of that name first on PYTHONPATH that raises ImportError."""
    blocker = tmp_path / 'no_tensorrt' / 'tensorrt'
    blocker.mkdir(parents=True)
    (blocker / '__init__.py').write_text('raise ImportError("TensorRT hidden by the test")\n')
    path = os.pathsep.join(p for p in (str(blocker.parent), ros_env.get('PYTHONPATH')) if p)
    return ros_env | {'PYTHONPATH': path}


@pytest.fixture(scope='session')
def ham() -> Path:
    if not (HAM / 'labels.csv').is_file():
        pytest.skip(f'real HAM10000 images not found at {HAM} (../shared is absent)')
    return HAM


@pytest.fixture(scope='session')
def pad() -> Path:
    if not (PAD / 'labels.csv').is_file():
        pytest.skip(f'PAD-UFES-20 clinical photographs not found at {PAD} (../shared is absent)')
    return PAD


@pytest.fixture(scope='session')
def ham_fullres() -> Path:
    if not (HAM_FULLRES / 'labels.csv').is_file():
        pytest.skip(f'full-resolution HAM10000 sample not found at {HAM_FULLRES}')
    return HAM_FULLRES


MODEL = REPO / DEFAULT_MODEL
SAMPLES = REPO / 'data' / 'samples'


def result_py(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """result.py run as a user runs it, with its output captured."""
    return subprocess.run(
        [sys.executable, str(REPO / 'result.py'), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope='session')
def ham_model() -> Path:
    """The shipped model (trained by training/ on ../shared HAM10000) with its variants."""
    assert (MODEL / 'model_card.json').is_file(), f'shipped model missing at {MODEL}'
    return MODEL


@pytest.fixture(scope='session')
def heldout_dermoscopy(ham_model, ham):
    """(crops, y) of every dermoscopic image of the shipped model's held-out fold, read once for
    the tests that re-measure the card's held-out figures."""
    import csv

    import numpy as np
    from skin_screening.core.model_card import ModelCard
    from skin_screening.core.preprocess import load_rgb, resize

    spec = ModelCard.load(ham_model).preprocessing
    with (ham_model / 'heldout.csv').open() as f:
        rows = [r for r in csv.DictReader(f) if r['domain'] == 'dermoscopic']
    crops = np.stack([resize(load_rgb(REPO / r['path']), spec) for r in rows])
    return crops, np.array([int(r['y']) for r in rows])


@pytest.fixture(scope='session')
def sample_frames():
    """(rgb frames, binary labels) of the embedded held-out sample images."""
    import csv

    import numpy as np
    from skin_screening.core.preprocess import load_rgb

    rows = list(csv.DictReader((SAMPLES / 'labels.csv').open()))
    frames = [load_rgb(SAMPLES / r['path']) for r in rows]
    y = np.array([1 if r['label'] in ('mel', 'bcc', 'akiec') else 0 for r in rows])
    return frames, y


def small_training(ham: Path, out: Path, *overrides: str) -> Path:
    """A CI-sized real training run on HAM10000 (alpha 0.5, 2 folds, one epoch per phase) with
    `overrides` on top; skips where the alpha 0.5 weights are absent."""
    from training.config import load_config
    from training.train import run_training

    if not WEIGHTS_05.is_file():
        pytest.skip(f'alpha 0.5 weights not found at {WEIGHTS_05}')
    base = [
        f'data.root={ham}',
        'split.folds=2',
        'train.head_epochs=1',
        'train.finetune_epochs=1',
        'model.alpha=0.5',
        f'model.weights={WEIGHTS_05}',
        f'out_dir={out}',
        f'cache_dir={out / "cache"}',
    ]
    return run_training(load_config(None, [*base, *overrides]))


@pytest.fixture(scope='session')
def small_run(ham, tmp_path_factory):
    """A small real training run: 300 HAM10000 images, 2 folds, 3 heads, 2 test-time views,
    ambiguity referral of 20 %, 50 % pruned; cached recipe, so also a distillation teacher.
    6 + 4 epochs (the epochs cost little beside tracing: 33 s against 31 s for 1 + 1)."""
    return small_training(
        ham,
        tmp_path_factory.mktemp('training'),
        'data.limit=300',
        'train.head_epochs=6',
        'train.finetune_epochs=4',
        'train.views=2',
        'export.check_images=16',
        'model.heads=3',
        'train.referral_coverage=0.8',
        'train.tta_views=2',
        'train.prune_sparsity=0.5',
    )
