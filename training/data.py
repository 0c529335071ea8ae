"""Labelled lesion images: datasets, configurable binary mappings, lesion-grouped folds."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from skin_screening.core.preprocess import FrameError, load_rgb

from .config import DataConfig, SplitConfig

IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp'}
MAPPINGS_DIR = Path(__file__).with_name('mappings')
DERMOSCOPIC = 'dermoscopic'  # the domain of formats that do not name one
FORMAT_DOMAINS = {'ham10000': DERMOSCOPIC, 'pad_ufes_20': 'clinical'}
FORMAT_MAPPINGS = {'ham10000': 'ham10000', 'pad_ufes_20': 'pad_ufes_20'}  # else: ham10000's


class DataError(ValueError):
    """The dataset cannot be used as configured (message says why and what to fix)."""


@dataclass
class LabelledSet:
    paths: list[Path]
    labels: list[str]  # the dataset's own class names
    y: np.ndarray  # binary: 1 = skin cancer
    groups: np.ndarray  # lesion / patient id; one image per group when the data has none
    ids: list[str]  # stable image ids (file stem)
    domains: np.ndarray | None = None  # imaging domain per image (dermoscopic, clinical, ...)

    def __post_init__(self) -> None:
        if self.domains is None:
            self.domains = np.array([DERMOSCOPIC] * len(self.paths))
        self.domains = np.asarray(self.domains).astype(str)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def domain_names(self) -> list[str]:
        """Domains in order of first appearance (the first is the primary dataset's)."""
        return list(dict.fromkeys(self.domains.tolist()))

    def subset(self, index: np.ndarray) -> LabelledSet:
        index = np.asarray(index, dtype=np.int64)
        return LabelledSet(
            [self.paths[i] for i in index],
            [self.labels[i] for i in index],
            self.y[index],
            self.groups[index],
            [self.ids[i] for i in index],
            self.domains[index],
        )

    @classmethod
    def concat(cls, parts: list[LabelledSet]) -> LabelledSet:
        seen: set[str] = set()
        for part in parts:
            groups = set(part.groups.tolist())
            if shared := seen & groups:
                raise DataError(
                    f'group ids {sorted(shared)[:3]} occur in two datasets: rename them so that '
                    'a lesion or patient cannot sit on both sides of a split'
                )
            seen |= groups
        return cls(
            [x for p in parts for x in p.paths],
            [x for p in parts for x in p.labels],
            np.concatenate([p.y for p in parts]),
            np.concatenate([p.groups for p in parts]),
            [x for p in parts for x in p.ids],
            np.concatenate([p.domains for p in parts]),
        )


def _norm(name: str) -> str:
    return re.sub(r'[\s\-_]+', '_', name.strip().lower())


@dataclass(frozen=True)
class Mapping:
    name: str
    positive: frozenset[str]
    negative: frozenset[str]

    @classmethod
    def load(cls, name_or_path: str) -> Mapping:
        path = Path(name_or_path)
        if not path.suffix:
            path = MAPPINGS_DIR / f'{name_or_path}.yaml'
        if not path.is_file():
            known = sorted(p.stem for p in MAPPINGS_DIR.glob('*.yaml'))
            raise DataError(f'no label mapping {name_or_path!r}; shipped mappings: {known}')
        spec = yaml.safe_load(path.read_text())
        return cls(
            path.stem,
            frozenset(_norm(x) for x in spec['skin_cancer']),
            frozenset(_norm(x) for x in spec['other']),
        )

    def binary(self, labels: list[str]) -> np.ndarray:
        normed = [_norm(label) for label in labels]
        unmapped = sorted({lab for lab in normed if lab not in self.positive | self.negative})
        if unmapped:
            raise DataError(
                f'labels not in mapping {self.name!r}: {unmapped}. Add them to skin_cancer or '
                'other in the mapping YAML.'
            )
        return np.array([lab in self.positive for lab in normed], dtype=np.int64)


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(f'label file {path} not found')
    with path.open(newline='') as f:
        return list(csv.DictReader(f))


def _from_rows(root: Path, rows, path_key, label_key, group_key, mapping) -> LabelledSet:
    paths = [root / r[path_key] for r in rows]
    labels = [r[label_key] for r in rows]
    groups = [r.get(group_key) or p.stem for r, p in zip(rows, paths)] if group_key else None
    groups = groups or [p.stem for p in paths]
    return LabelledSet(
        paths, labels, mapping.binary(labels), np.array(groups), [p.stem for p in paths]
    )


def load_dataset(config: DataConfig) -> LabelledSet:
    """Read a dataset's index (no pixels) and map its labels to binary; `config.extra` datasets
    (other domains, e.g. clinical photographs beside dermoscopy) follow the primary one."""
    parts = [_load_one(config)]
    for i, extra in enumerate(config.extra):
        if not isinstance(extra, dict):
            raise DataError(f'data.extra[{i}] must be a mapping (format, root, mapping, ...)')
        try:
            sub = DataConfig(**{'bad_images': config.bad_images} | extra)
        except TypeError as exc:
            raise DataError(f'data.extra[{i}]: {exc}') from exc
        if sub.extra:
            raise DataError(f'data.extra[{i}] cannot have extra datasets of its own')
        parts.append(_load_one(sub))
    return LabelledSet.concat(parts) if len(parts) > 1 else parts[0]


def mapping_name(config: DataConfig) -> str:
    return config.mapping or FORMAT_MAPPINGS.get(config.format, 'ham10000')


def _load_one(config: DataConfig) -> LabelledSet:
    root = Path(config.root)
    if not root.is_dir():
        raise DataError(f'dataset folder {root} not found')
    mapping = Mapping.load(mapping_name(config))
    if config.format == 'ham10000':
        labels_csv = root / 'labels.csv'
        if labels_csv.is_file():
            data = _from_rows(root, _read_csv(labels_csv), 'image', 'dx', 'lesion_id', mapping)
        else:  # the original release: HAM10000_metadata.csv + images/<image_id>.jpg
            rows = _read_csv(root / 'HAM10000_metadata.csv')
            for row in rows:
                row['image'] = f'images/{row["image_id"]}.jpg'
            data = _from_rows(root, rows, 'image', 'dx', 'lesion_id', mapping)
    elif config.format == 'pad_ufes_20':  # clinical photographs, grouped by patient
        rows = _read_csv(root / 'labels.csv')
        data = _from_rows(root, rows, 'image', 'diagnosis', 'patient_id', mapping)
    elif config.format == 'folder':
        rows = [
            {'path': str(p.relative_to(root)), 'label': p.parent.name}
            for p in sorted(root.glob('*/*'))
            if p.suffix.lower() in IMAGE_SUFFIXES
        ]
        data = _from_rows(root, rows, 'path', 'label', None, mapping)
    elif config.format == 'csv':
        csv_path = Path(config.csv or root / 'labels.csv')
        rows = _read_csv(csv_path)
        if rows and not {'path', 'label'} <= set(rows[0]):
            raise DataError(f'{csv_path} needs columns path,label[,group]')
        data = _from_rows(root, rows, 'path', 'label', 'group', mapping)
    else:
        raise DataError(
            f'unknown dataset format {config.format!r} (ham10000, pad_ufes_20, folder, csv)'
        )
    if len(data) == 0:
        raise DataError(f'no images found in {root}')
    for cls, name in ((1, 'skin_cancer'), (0, 'other')):
        if not np.any(data.y == cls):
            raise DataError(f'class {name!r} has no images in {root}: both classes are needed')
    if config.limit:
        data = stratified_group_subset(data, config.limit)
    domain = config.domain or FORMAT_DOMAINS.get(config.format, DERMOSCOPIC)
    data.domains = np.array([domain] * len(data))
    return data


def stratified_group_subset(data: LabelledSet, limit: int, seed: int = 0) -> LabelledSet:
    """About `limit` images, whole groups only, every diagnosis kept in proportion (so both
    classes are): a group counts under its rarest diagnosis; per diagnosis, groups in a seeded
    random order, as many as bring its images closest to its share of `limit`, at least one.

    Linear in the number of images (a StratifiedGroupKFold into len / limit folds took 40 s for
    160 of HAM10000's images)."""
    if limit >= len(data):
        return data
    rng = np.random.default_rng(seed)
    names, label_of = np.unique(np.asarray(data.labels, dtype=str), return_inverse=True)
    frequency = np.bincount(label_of)
    _, group_of = np.unique(data.groups, return_inverse=True)
    sizes = np.bincount(group_of)
    rarest = np.full(len(sizes), -1)
    for label in np.argsort(-frequency):  # the rarer label written last wins
        rarest[np.unique(group_of[label_of == label])] = label
    keep = np.zeros(len(sizes), dtype=bool)
    for label in range(len(names)):
        members = rng.permutation(np.nonzero(rarest == label)[0])
        if not len(members):
            continue
        total = np.cumsum(sizes[members])
        quota = limit * total[-1] / len(data)
        keep[members[: int(np.argmin(np.abs(total - quota))) + 1]] = True
    return data.subset(np.nonzero(keep[group_of])[0])


def grouped_folds(data: LabelledSet, split: SplitConfig, seed: int) -> np.ndarray:
    """Fold number per image: stratified by label and domain, grouped by lesion or patient (no
    group in two folds). Each domain is split on its own, so a dataset's folds do not change
    when another domain joins it."""
    from sklearn.model_selection import StratifiedGroupKFold

    fold = np.full(len(data), -1, dtype=np.int64)
    for domain in data.domain_names:
        mine = np.nonzero(data.domains == domain)[0]
        splitter = StratifiedGroupKFold(n_splits=split.folds, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(len(mine)), data.y[mine], data.groups[mine])
        for k, (_, index) in enumerate(parts):
            fold[mine[index]] = k
    return fold


def inner_split(data: LabelledSet, index: np.ndarray, fraction: float, seed: int):
    """Split training indices into (fit, validation) by group, stratified, per domain."""
    from sklearn.model_selection import StratifiedGroupKFold

    parts = max(2, round(1 / fraction))
    fit, val = [], []
    for domain in data.domain_names:
        mine = index[data.domains[index] == domain]
        if not len(mine):
            continue
        splitter = StratifiedGroupKFold(n_splits=parts, shuffle=True, random_state=seed)
        a, b = next(splitter.split(np.zeros(len(mine)), data.y[mine], data.groups[mine]))
        fit.append(mine[a])
        val.append(mine[b])
    return np.concatenate(fit), np.concatenate(val)


def fold_fit_val(data: LabelledSet, fold: np.ndarray, k: int, fraction: float, seed: int):
    """Fold k's training images as every run splits them into (fit, validation): the inner
    split of the other folds' images, seeded with the run's seed + k."""
    return inner_split(data, np.nonzero(fold != k)[0], fraction, seed + k)


def training_fold_rows(model_dir: str | Path) -> list[dict[str, str]] | None:
    """Rows of a model folder's split file outside its held-out fold (what it was trained on).

    None when the folder has no split file (a model trained elsewhere).
    """
    from skin_screening.core.model_card import ModelCard

    card = ModelCard.load(model_dir)
    split = Path(model_dir) / card.data.get('split_file', 'split.csv')
    if not split.is_file():
        return None
    held = str(card.data.get('heldout_fold', 0))
    with split.open(newline='') as f:
        return [row for row in csv.DictReader(f) if row['fold'] != held]


def split_set(model_dir: str | Path) -> tuple[LabelledSet, np.ndarray]:
    """A model folder's split file as (images, fold per image)."""
    from skin_screening.core.model_card import ModelCard

    card = ModelCard.load(model_dir)
    split = Path(model_dir) / card.data.get('split_file', 'split.csv')
    rows = _read_csv(split)
    data = LabelledSet(
        [Path(r['path']) for r in rows],
        [r['label'] for r in rows],
        np.array([int(r['y']) for r in rows]),
        np.array([r['group'] for r in rows]),
        [Path(r['path']).stem for r in rows],
        np.array([r.get('domain') or DERMOSCOPIC for r in rows]),
    )
    return data, np.array([int(r['fold']) for r in rows])


def release_validation(model_dir: str | Path) -> LabelledSet:
    """The inner-validation images of a model folder's release model: outside its training
    (early stopping and calibration data) and outside its held-out fold. Recomputed from the
    split file with the run's seed, and checked against the count its card recorded."""
    from skin_screening.core.model_card import ModelCard

    card = ModelCard.load(model_dir)
    config = card.training.get('config', {})
    held = int(card.data.get('heldout_fold', 0))
    data, fold = split_set(model_dir)
    _, val = fold_fit_val(
        data, fold, held, config['split']['inner_val_fraction'], int(config['seed'])
    )
    expected = card.metrics.get('holdout', {}).get('n_val')
    if expected is not None and expected != len(val):
        raise DataError(
            f'{model_dir}: recomputed {len(val)} validation images, the card says {expected} '
            '(another split or library version): cannot reuse its validation set'
        )
    return data.subset(val)


def read_images(data: LabelledSet, policy: str = 'skip'):
    """Decode every image; report unreadable ones (count + first paths); skip or fail."""
    images, keep, bad = [], [], []
    for i, path in enumerate(data.paths):
        try:
            images.append(load_rgb(path))
            keep.append(i)
        except FrameError as exc:
            bad.append(str(exc))
    if bad:
        report = f'{len(bad)} unreadable image(s), first: ' + '; '.join(bad[:3])
        if policy == 'fail':
            raise DataError(report)
        print(f'warning: {report} (skipped)')
    return images, data.subset(np.array(keep, dtype=np.int64)), bad
