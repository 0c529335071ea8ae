import numpy as np
import pytest

from tests.conftest import REPO, WEIGHTS_05
from training.config import DataConfig, ModelConfig, SplitConfig, load_config
from training.data import (
    DataError,
    Mapping,
    grouped_folds,
    inner_split,
    load_dataset,
    stratified_group_subset,
)
from training.model import TrainingError, resolve_weights


def test_ham10000_folds_never_share_a_lesion(ham):
    data = load_dataset(DataConfig(root=str(ham)))
    assert len(data) > 8000 and 0.15 < data.y.mean() < 0.25
    fold = grouped_folds(data, SplitConfig(folds=5), seed=1234)
    for k in range(5):
        assert not set(data.groups[fold == k]) & set(data.groups[fold != k])
        assert 0.15 < data.y[fold == k].mean() < 0.25  # stratified
    train = np.nonzero(fold != 0)[0]
    fit, val = inner_split(data, train, 0.15, seed=0)
    assert not set(data.groups[fit]) & set(data.groups[val])


@pytest.mark.parametrize(
    ('root', 'fmt', 'limit'), [('ham', 'ham10000', 160), ('pad', 'pad_ufes_20', 90)]
)
def test_a_limited_set_keeps_whole_groups_and_every_diagnosis(root, fmt, limit, request):
    data = load_dataset(DataConfig(format=fmt, root=str(request.getfixturevalue(root))))
    part = stratified_group_subset(data, limit)
    assert abs(len(part) - limit) <= 0.1 * limit
    chosen = set(part.groups)
    assert sum(g in chosen for g in data.groups) == len(part)  # whole groups only
    for label in set(data.labels):  # every diagnosis, near its share
        share = data.labels.count(label) / len(data)
        assert 1 <= part.labels.count(label) <= max(3, 2 * share * limit)
    assert abs(part.y.mean() - data.y.mean()) < 0.05
    again = stratified_group_subset(data, limit)
    assert again.ids == part.ids and stratified_group_subset(data, limit, seed=1).ids != part.ids


def test_mapping_rejects_unknown_labels():
    mapping = Mapping.load('ham10000')
    assert list(mapping.binary(['mel', 'NV', 'bcc'])) == [1, 0, 1]
    with pytest.raises(DataError, match=r"\['psoriasis'\]"):
        mapping.binary(['mel', 'psoriasis'])


def test_paper_mapping_handles_folder_names():
    mapping = Mapping.load('skin_lesions_14')
    assert list(mapping.binary(['Squamous cell carcinoma', 'Monkeypox', 'Melanoma'])) == [1, 0, 1]


def _folder_dataset(root, classes, sample):
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            (root / name / f'{name}_{i}.jpg').write_bytes(sample.read_bytes())


def test_folder_dataset_and_empty_class(tmp_path, ham):
    sample = next((ham / 'images').glob('*.jpg'))
    _folder_dataset(tmp_path / 'ok', {'melanoma': 2, 'healthy': 3}, sample)
    data = load_dataset(
        DataConfig(format='folder', root=str(tmp_path / 'ok'), mapping='skin_lesions_14')
    )
    assert sorted(data.y.tolist()) == [0, 0, 0, 1, 1]
    _folder_dataset(tmp_path / 'neg', {'healthy': 3}, sample)
    with pytest.raises(DataError, match="class 'skin_cancer' has no images"):
        load_dataset(
            DataConfig(format='folder', root=str(tmp_path / 'neg'), mapping='skin_lesions_14')
        )


def test_csv_dataset_needs_its_columns(tmp_path):
    (tmp_path / 'labels.csv').write_text('file,dx\na.jpg,mel\n')
    with pytest.raises(DataError, match='path,label'):
        load_dataset(DataConfig(format='csv', root=str(tmp_path)))


def test_config_overrides_are_typed_and_checked():
    config = load_config(None, ['train.views=4', 'model.alpha=0.35', 'data.limit=100'])
    assert (config.train.views, config.model.alpha, config.data.limit) == (4, 0.35, 100)
    with pytest.raises(KeyError, match='unknown config key'):
        load_config(None, ['train.epochz=3'])


def test_imagenet_weights_fall_back_to_the_local_copy_offline(monkeypatch, tmp_path):
    if not WEIGHTS_05.is_file():
        pytest.skip(f'{WEIGHTS_05} absent (../shared not mounted)')
    keras = pytest.importorskip('keras')

    def offline(*args, **kwargs):
        raise OSError('Name or service not known')

    monkeypatch.setenv('KERAS_HOME', str(tmp_path))
    monkeypatch.setattr(keras.utils, 'get_file', offline)
    for size in (224, 288):  # Keras loads its 224 weights for unpublished sizes
        config = ModelConfig(alpha=0.5, input_size=size, weights_fallback=str(WEIGHTS_05))
        path, source = resolve_weights(config)
        assert path == str(WEIGHTS_05) and 'local file' in source and 'sha256 279052de' in source
    with pytest.raises(TrainingError, match='could not be downloaded'):
        resolve_weights(ModelConfig(alpha=1.0, weights_fallback=str(WEIGHTS_05)))


SHIPPED_CONFIGS = sorted((REPO / 'training/configs').glob('*.yaml'))


@pytest.mark.parametrize('path', SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_shipped_training_configs_load_and_validate(path):
    cfg = load_config(path)
    assert cfg.name and cfg.name != load_config().name
