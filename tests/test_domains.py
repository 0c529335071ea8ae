"""Imaging domains: dermoscopy and clinical photographs in one grouped CV, camera-like views,
domain-balanced sampling, and operating points with a calibration per domain."""

import csv

import numpy as np
import pytest
from skin_screening.core.classifier import Classifier
from skin_screening.core.model_card import ModelCard
from skin_screening.core.operating_points import (
    OperatingPointError,
    domain_default,
    domain_points,
)
from skin_screening.core.preprocess import Preprocessing, load_rgb

from tests.conftest import small_training
from training.camera import CameraAugment, camera_views
from training.config import DataConfig, SplitConfig, load_config
from training.data import DataError, LabelledSet, grouped_folds, inner_split, load_dataset
from training.recipe import class_weights, epoch_positions


def _joint(ham, pad, **extra) -> DataConfig:
    return DataConfig(root=str(ham), extra=[{'format': 'pad_ufes_20', 'root': str(pad)} | extra])


def test_a_domain_keeps_its_own_folds_when_another_joins(ham, pad):
    """Each domain is split on its own: HAM10000's folds and inner validation are those of a run
    on HAM10000 alone (so dermoscopic CV figures compare fold by fold); patients never split."""
    joint = load_dataset(_joint(ham, pad))
    alone = load_dataset(DataConfig(root=str(ham)))
    assert joint.domain_names == ['dermoscopic', 'clinical']
    assert (joint.domains == 'clinical').sum() == 441
    fold = grouped_folds(joint, SplitConfig(), 1234)
    fold_alone = grouped_folds(alone, SplitConfig(), 1234)
    derm = joint.domains == 'dermoscopic'
    assert np.array_equal(fold[derm], fold_alone)
    clinical = ~derm
    for k in range(5):
        mine = clinical & (fold == k)
        assert not set(joint.groups[mine]) & set(joint.groups[clinical & (fold != k)])
        assert 0.4 < joint.y[mine].mean() < 0.7  # stratified within the clinical photos
    train = np.nonzero(fold != 0)[0]
    fit, val = inner_split(joint, train, 0.15, seed=1234)
    fit_a, val_a = inner_split(alone, np.nonzero(fold_alone != 0)[0], 0.15, seed=1234)
    assert np.array_equal(val[joint.domains[val] == 'dermoscopic'], val_a)
    assert set(joint.domains[val]) == {'dermoscopic', 'clinical'}


def test_early_stopping_on_one_domain_needs_two():
    with pytest.raises(ValueError, match='stop_domain needs data.extra'):
        load_config(None, ['train.stop_domain=dermoscopic'])


def test_a_group_in_two_datasets_is_refused(ham):
    with pytest.raises(DataError, match='occur in two datasets'):
        load_dataset(DataConfig(root=str(ham), extra=[{'root': str(ham), 'domain': 'copy'}]))
    with pytest.raises(DataError, match=r'data.extra\[0\]'):
        load_dataset(DataConfig(root=str(ham), extra=[{'folder': 'x'}]))


def test_camera_views_are_reproducible_camera_like_crops(ham):
    image = load_rgb(sorted((ham / 'images').glob('*.jpg'))[0])
    spec = Preprocessing()
    a = camera_views(image, spec, 4, seed=7, aug=CameraAugment())
    b = camera_views(image, spec, 4, seed=7, aug=CameraAugment())
    c = camera_views(image, spec, 4, seed=8, aug=CameraAugment())
    assert all(v.shape == (224, 224, 3) and v.dtype == np.uint8 for v in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # cached views: same every run
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert len({round(float(v.mean()), 1) for v in a}) == 4  # exposure differs between views


def test_domain_balanced_epochs_and_per_domain_class_weights():
    domains = np.array(['d'] * 900 + ['c'] * 100)
    visits = epoch_positions(domains, 0.25)
    assert set(visits[:1000]) == set(range(1000))  # every image once ...
    assert np.mean(domains[visits] == 'c') == pytest.approx(0.25, abs=0.002)  # ... c at 25 %
    assert np.array_equal(epoch_positions(domains, 0.0), np.arange(1000))
    y = np.array([1] * 100 + [0] * 800 + [1] * 50 + [0] * 50)
    w = class_weights(y, True, domains)
    for d in ('d', 'c'):
        m = domains == d
        assert w[m & (y == 1)].sum() == pytest.approx(w[m & (y == 0)].sum())


@pytest.fixture(scope='module')
def joint_run(ham, pad, tmp_path_factory):
    """A small real joint run: 200 HAM10000 + 90 clinical images, 2 folds, a camera view, the
    clinical photos at least a quarter of each epoch, dermoscopy first and then one adapt epoch
    on both; then its operating points."""
    from training.operating_points import write_operating_points

    run = small_training(
        ham,
        tmp_path_factory.mktemp('joint'),
        'data.limit=200',
        f'data.extra=[{{format: pad_ufes_20, root: "{pad}", limit: 90}}]',
        'train.views=1',
        'train.camera_views=1',
        'train.domain_share=0.25',
        'train.stop_domain=dermoscopic',
        'train.pretrain_domain=dermoscopic',
        'train.adapt_epochs=1',
        'export.check_images=8',
    )
    write_operating_points(run, [run])
    return run


@pytest.mark.slow
def test_a_joint_run_reports_and_calibrates_each_domain(joint_run):
    from tests.test_operating_points import brute_force_points
    from training.operating_points import pooled_oof

    card = ModelCard.load(joint_run)
    counts = card.data['domains']
    assert set(counts) == {'dermoscopic', 'clinical'} and counts['clinical']['images'] >= 80
    folds = card.metrics['cv_folds']
    for f in folds:
        assert {d: f['domains'][d]['n_test'] > 0 for d in counts} == {d: True for d in counts}
        assert f['domains']['dermoscopic']['at_threshold'] == f['at_threshold']
        assert set(f['pretrained']['val_aucs']) == {'dermoscopic'}  # pretrained on it alone
        assert f['best']['phase'] in ('adapt', 'before adapt')
    summary = card.metrics['cv_summary']['domains']['clinical']['at_threshold']
    assert np.isfinite(summary['roc_auc']['mean'])
    with (joint_run / 'split.csv').open() as f:
        assert {r['domain'] for r in csv.DictReader(f)} == {'dermoscopic', 'clinical'}
    ops = card.operating_points
    kinds = ('screening', 'melanoma', 'balanced')  # melanoma: where the domain has melanomas
    assert set(domain_points(ops, 'clinical')) == {f'clinical-{k}' for k in kinds}
    assert set(domain_points(ops, 'dermoscopic')) == set(kinds)
    # the clinical points recomputed here from the run's own pooled out-of-fold predictions
    oof = pooled_oof(joint_run, [joint_run])
    y, p, domains, mel = oof.y, oof.p, oof.domain, oof.mel
    clinical = domains == 'clinical'
    expected = brute_force_points(y[clinical], p[clinical], mel[clinical])
    for kind in kinds:
        assert ops['points'][f'clinical-{kind}']['threshold'] == pytest.approx(expected[kind])
    assert domain_default(ops, 'clinical') == 'clinical-screening'
    assert domain_default(ops, 'dermoscopic') == ops['default'] == 'screening'
    assert domain_default(ops, 'x-ray') is None
    calibration = ops['calibration']['model.fp32.onnx']
    clinical = calibration['domains']['clinical']
    assert calibration['domain'] == 'dermoscopic'
    # a domain with few validation images: calibrated on its pooled out-of-fold logits
    from skin_screening.core.metrics import fit_calibration

    from training.data import release_validation
    from training.operating_points import MIN_CALIBRATION

    val = release_validation(joint_run)
    for domain, entry in (('dermoscopic', calibration), ('clinical', clinical)):
        pooled = entry.get('fitted_on') == 'pooled out-of-fold logits'
        assert pooled == (int((val.domains == domain).sum()) < MIN_CALIBRATION), domain
    mine = domains == 'clinical'
    assert clinical['fitted_on'] == 'pooled out-of-fold logits' and clinical['logit_offset'] == 0
    assert clinical['images'] == int(mine.sum()) > clinical['offset_images']
    t, b = fit_calibration(y[mine], oof.logit[mine])
    assert (clinical['temperature'], clinical['bias']) == pytest.approx((t, b))
    clf = Classifier(joint_run, operating_point='clinical-screening', warmup_runs=0)
    try:  # the clinical point decides with the clinical calibration
        assert (clf.rule.temperature, clf.rule.bias) == (clinical['temperature'], clinical['bias'])
        assert clf.rule.threshold == ops['points']['clinical-screening']['threshold']
    finally:
        clf.close()
    del ops['calibration']['model.fp32.onnx']['domains']
    with pytest.raises(OperatingPointError, match='no clinical calibration'):
        card.rule('model.fp32.onnx', 'clinical-screening')


def test_a_labelled_set_without_domains_is_dermoscopic():
    data = LabelledSet([], [], np.zeros(0), np.zeros(0), [])
    assert data.domain_names == []
    assert LabelledSet(['a'], ['nv'], np.zeros(1), np.array(['g']), ['a']).domain_names == [
        'dermoscopic'
    ]


@pytest.mark.slow
def test_evaluation_reports_each_domain_at_its_own_points(joint_run):
    from training.evaluate import evaluate_all

    rows, table = evaluate_all(joint_run, precisions=('fp32',), repeats=2)
    by_domain = {}
    for r in table:
        by_domain.setdefault(r['domain'], set()).add(r['operating_point'])
    kinds = {'screening', 'melanoma', 'balanced'}
    assert by_domain == {'dermoscopic': kinds, 'clinical': {f'clinical-{k}' for k in kinds}}
    with (joint_run / 'heldout.csv').open() as f:
        held = list(csv.DictReader(f))
    clinical = [r for r in table if r['domain'] == 'clinical']
    n_clinical = sum(r['domain'] == 'clinical' for r in held)
    assert all(r['frames'] + r['unassessable'] == n_clinical for r in clinical)
    assert all(0 <= r['recall_ci'][0] <= r['recall'] <= r['recall_ci'][1] for r in clinical)
    assert rows[0]['images'] == len(held) - n_clinical  # the default point's domain: dermoscopic


def test_run_py_decides_at_the_point_of_the_datas_domain(ham_model):
    from argparse import Namespace

    from training.replay_scoring import choose_point

    def point(fmt, chosen=None):
        return choose_point(Namespace(format=fmt, model_dir=ham_model, operating_point=chosen))

    assert point('pad_ufes_20') == 'clinical-screening'
    assert point('ham10000') == point('csv') == 'screening'
    assert point('pad_ufes_20', 'balanced') == 'balanced'
    with pytest.raises(OperatingPointError, match="unknown operating point 'lenient'"):
        point('ham10000', 'lenient')


def _conflicting_domains(seed=0):
    """Cut activations where domain 'b' labels the first channel the other way round from 'a'
    and also shows its label in the second channel: training on 'b' costs 'a'."""
    rng = np.random.default_rng(seed)
    domains = np.array(['a'] * 600 + ['b'] * 300)
    y = rng.integers(0, 2, len(domains))
    sign = np.where(domains == 'a', 1.0, -1.0)
    acts = rng.standard_normal((1, len(y), 2, 2, 4)).astype(np.float32)
    acts[0, :, :, :, 0] += (sign * (2 * y - 1) * 0.8)[:, None, None]
    acts[0, :, :, :, 1] += (np.where(domains == 'b', 2 * y - 1, 0) * 0.8)[:, None, None]
    return acts, y, domains


def _adapted(tolerance: float):
    import keras

    from training.config import TrainConfig
    from training.model import SplitModel
    from training.recipe import train_cached

    keras.utils.set_random_seed(3)
    acts, y, domains = _conflicting_domains()
    inputs = keras.Input((2, 2, 4))
    head = keras.layers.Dense(1)
    top = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(inputs)))
    model = SplitModel(full=None, front=None, top=top, head_layers=[head], weights_source='')
    index = np.arange(len(y))
    fit, val = index[index % 4 != 0], index[index % 4 == 0]
    cfg = TrainConfig(
        head_epochs=4,
        head_lr=0.05,
        finetune_epochs=0,
        feature_noise=0.0,
        domain_share=0.4,
        pretrain_domain='a',
        adapt_epochs=6,
        adapt_lr=0.05,
        adapt_tolerance=tolerance,
        patience=6,
        batch_size=32,
        views=1,
    )
    return train_cached(model, acts, y, fit, val, cfg, seed=3, domains=domains)


def test_adapting_to_a_new_domain_keeps_the_pretrained_domain():
    """Pretraining sees domain 'a' alone; the adapt phase trains on both and keeps only epochs
    whose validation ROC-AUC on 'a' stays within the tolerance of pretraining's best."""
    guarded, free = _adapted(0.0), _adapted(1.0)
    for history in (guarded, free):
        assert set(history.pretrained['val_aucs']) == {'a'}
        assert {e['phase'] for e in history.epochs} == {'head', 'adapt'}
        assert history.best['phase'] in ('adapt', 'before adapt')
    floor = guarded.pretrained['val_auc']
    assert guarded.best['val_aucs']['a'] >= floor
    assert free.best['val_aucs']['a'] < floor - 0.02  # unguarded, 'b' is bought with 'a'
    assert free.best['val_aucs']['b'] > guarded.best['val_aucs']['b']


def test_adapting_needs_a_pretraining_domain():
    with pytest.raises(ValueError, match='set train.pretrain_domain'):
        load_config(None, ['data.extra=[{format: pad_ufes_20}]', 'train.adapt_epochs=2'])
    with pytest.raises(ValueError, match='pretrain_domain needs data.extra'):
        load_config(None, ['train.pretrain_domain=dermoscopic'])
