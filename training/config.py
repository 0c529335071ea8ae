"""Typed configuration of a training run: dataclasses, YAML overrides, resolved copy saved."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from skin_screening.core.postprocess import UNCERTAINTY_SCORES
from skin_screening.core.preprocess import VIEW_COUNTS, Preprocessing


@dataclass
class DataConfig:
    format: str = 'ham10000'  # ham10000 | pad_ufes_20 | folder | csv
    root: str = '../shared/datasets/ham10000'
    mapping: str = ''  # a name in training/mappings/ or a YAML path; '' = the format's own
    csv: str | None = None  # for format=csv: path,label[,group]
    bad_images: str = 'skip'  # skip | fail
    limit: int | None = None  # take a stratified, group-aware subset (tests, quick runs)
    domain: str = ''  # '' = the format's: ham10000 dermoscopic, pad_ufes_20 clinical
    # More datasets in the same grouped CV, each a mapping of the keys above (format, root,
    # mapping, domain, limit, ...): e.g. clinical photographs beside dermoscopy.
    extra: list[dict] = field(default_factory=list)


@dataclass
class SplitConfig:
    folds: int = 5
    inner_val_fraction: float = 0.15  # groups held out of each training fold for early stopping
    holdout_fold: int = 0  # the release model is the model of this fold; its fold is the test set
    only_folds: list[int] | None = None  # train just these folds (e.g. [0] for a release model)

    def trained_folds(self) -> list[int]:
        return [k for k in range(self.folds) if self.only_folds is None or k in self.only_folds]


@dataclass
class ModelConfig:
    architecture: str = 'mobilenet_v2'  # mobilenet_v2 | compact_cnn (trained from scratch)
    alpha: float = 1.0  # the paper's backbone (5-fold CV ROC-AUC 0.890 vs 0.878 for 0.5)
    input_size: int = 224
    resize: str = 'center_crop'
    color_constancy: int = 0  # shades-of-grey Minkowski p before scaling (6 = ISIC's), 0 = off
    weights: str = 'imagenet'  # imagenet | none | path to a no-top .h5
    # Offline stand-in for Keras' ImageNet file of this alpha (BN folded: the BN layers stay
    # in inference mode in both recipes). Alpha 0.5: Keras' own file in ../shared/weights.
    weights_fallback: str | None = (
        '../shared/weights/mobilenet_v2_1.0_224_no_top.from_coral_qat.h5'
    )
    cut_layer: str = 'block_12_add'  # frozen below (activations cached), trained above
    dropout: float = 0.3
    heads: int = 1
    # compact_cnn: one block per width (conv 3x3 + BN + ReLU, `convs_per_block` times, then 2x2
    # max-pool; the first conv strides 2), a dense layer of `dense` units, global pooling, head.
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    convs_per_block: int = 1
    dense: int = 256

    def preprocessing(self) -> Preprocessing:
        """THE preprocessing this model is trained with (stored in its model card)."""
        return Preprocessing(self.input_size, self.resize, color_constancy=self.color_constancy)


@dataclass
class TrainConfig:
    recipe: str = 'cached'  # cached (paper recipe on cached activations) | full (tf.data, GPU)
    views: int = 8  # dihedral views cached per image (1, 2, 4 or 8)
    # Camera-like views (training/camera.py: reframing, defocus, motion blur, exposure and
    # white balance, JPEG) cached per image after the dihedral ones; training draws from all.
    camera_views: int = 0
    # With more than one domain: the smallest share of each epoch's samples every domain gets
    # (its images repeated, each repeat in a random view); 0 = the data's own proportions.
    domain_share: float = 0.0
    # Early stopping on the validation ROC-AUC of this domain ('' = the mean over the domains).
    stop_domain: str = ''
    # Train head and top on this domain alone first (early stopping on it), then fine-tune on
    # every domain for `adapt_epochs` at `adapt_lr`, keeping only epochs whose validation ROC-AUC
    # on this domain stays within `adapt_tolerance` of what its own training reached.
    pretrain_domain: str = ''
    adapt_epochs: int = 0
    adapt_lr: float = 5e-5
    adapt_tolerance: float = 0.0
    # Instead of training: mix two runs' fold tops, (1 - l) A + l B (training/mix.py), with l
    # chosen on validation among `mix_lambdas`, the first domain's validation ROC-AUC at most
    # `mix_tolerance` below l = 0's.
    mix_runs: list[str] = field(default_factory=list)
    mix_lambdas: list[float] = field(default_factory=lambda: [0, 0.25, 0.4, 0.5, 0.6, 0.75, 1])
    mix_tolerance: float | None = None  # None: the bootstrap SE on the fold's validation
    batch_size: int = 64
    head_epochs: int = 8
    head_lr: float = 1e-3
    finetune_epochs: int = 20
    finetune_lr: float = 2e-4
    weight_decay: float = 1e-4
    # Gaussian noise added to the cached cut activations while training, in units of each
    # channel's standard deviation (plus a per-image channel offset of half that): makes the top
    # robust to perturbed front features. Measured here: INT8 rounding in the frozen front
    # perturbs the cut by 0.46-0.73 std per channel, with offsets of about 0.28 std. 0 = off.
    feature_noise: float = 0.8
    patience: int = 4
    class_weights: bool = True
    threshold_policy: str = 'max_f1'  # max_f1 | min_sensitivity
    min_sensitivity: float = 0.90
    # Fraction of frames the release model answers: the rest (most uncertain, bound chosen on
    # inner validation) become REFER. 1.0 = never refer; CV reports 0.8 either way.
    referral_coverage: float = 1.0
    # What refers: ambiguity (closeness to the decision threshold), entropy or epistemic (K > 1).
    referral_score: str = 'ambiguity'
    # Test-time augmentation: dihedral views averaged per frame, in training evaluation and (via
    # the model card) in the node; all views of a frame go through the engine in one batch.
    tta_views: int = 1
    # Knowledge distillation (recipe full): a cached-recipe run with the same data, split and seed
    # whose per-fold logits guide this run; alpha weighs the soft term, T softens both sides.
    teacher_run: str | None = None
    # Magnitude pruning (recipe cached): target zero fraction of the trained kernels, reached by a
    # polynomial schedule during fine-tuning (training/prune.py). 0 = off.
    prune_sparsity: float = 0.0
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0
    bootstrap_heads: bool = True  # with model.heads > 1: each head sees a Poisson(1) resample


@dataclass
class ExportConfig:
    opset: int = 17
    tolerance: float = 1e-4
    check_images: int = 32
    release: bool = True  # false: a study run (CV figures, fold weights; no ONNX, no card)


@dataclass
class RunConfig:
    name: str = 'mobilenetv2-a1.0'
    out_dir: str = 'data/runs/training'
    cache_dir: str = 'data/cache'
    seed: int = 1234
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> RunConfig:
        """Refuse combinations that would fail late in a run."""
        t, split = self.train, self.split
        if not 0 <= split.holdout_fold < split.folds:
            raise ValueError(
                f'split.holdout_fold {split.holdout_fold} not in 0..{split.folds - 1}'
            )
        if t.tta_views not in VIEW_COUNTS or t.views not in VIEW_COUNTS:
            raise ValueError(f'train.views and train.tta_views must be in {VIEW_COUNTS}')
        if t.camera_views < 0 or not 0.0 <= t.domain_share < 1.0:
            raise ValueError('train.camera_views must be >= 0 and train.domain_share in [0, 1)')
        if t.stop_domain and not self.data.extra:
            raise ValueError('train.stop_domain needs data.extra (more than one domain)')
        if (t.pretrain_domain or t.adapt_epochs) and (not self.data.extra or t.recipe != 'cached'):
            raise ValueError('train.pretrain_domain needs data.extra and train.recipe=cached')
        if t.mix_runs and (len(t.mix_runs) != 2 or t.recipe != 'cached'):
            raise ValueError('train.mix_runs mixes two cached-recipe runs: [A, B]')
        if t.mix_runs and (0 not in t.mix_lambdas or not all(0 <= x <= 1 for x in t.mix_lambdas)):
            raise ValueError('train.mix_lambdas must lie in [0, 1] and include 0 (run A)')
        if t.adapt_epochs and not t.pretrain_domain:
            raise ValueError(
                'train.adapt_epochs adapts a pretrained top: set train.pretrain_domain'
            )
        if t.camera_views and t.recipe != 'cached':
            raise ValueError('train.camera_views are cached views: use train.recipe=cached')
        if t.recipe == 'cached' and t.tta_views > t.views:
            raise ValueError(f'train.tta_views {t.tta_views} > cached train.views {t.views}')
        if t.referral_score not in UNCERTAINTY_SCORES:
            raise ValueError(f'unknown train.referral_score {t.referral_score!r}')
        if t.recipe == 'cached' and self.model.architecture != 'mobilenet_v2':
            raise ValueError(
                f'{self.model.architecture} trains from scratch: use train.recipe=full'
            )
        if not 0.0 <= t.prune_sparsity < 1.0 or (t.prune_sparsity and t.recipe != 'cached'):
            raise ValueError('train.prune_sparsity must be in [0, 1), with train.recipe=cached')
        if t.teacher_run and t.recipe != 'full':
            raise ValueError('distillation (train.teacher_run) needs train.recipe=full')
        if t.referral_score == 'epistemic' and self.model.heads < 2:
            raise ValueError('train.referral_score epistemic needs model.heads > 1')
        return self

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _merge(instance: Any, overrides: dict[str, Any], where: str = '') -> Any:
    names = {f.name: f for f in dataclasses.fields(instance)}
    for key, value in overrides.items():
        if key not in names:
            raise KeyError(f'unknown config key {where}{key!r}; known: {sorted(names)}')
        current = getattr(instance, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise TypeError(f'config key {where}{key} must be a mapping')
            _merge(current, value, f'{where}{key}.')
        else:
            setattr(instance, key, value)
    return instance


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults <- YAML file <- 'section.key=value' overrides (values parsed as YAML)."""
    config = RunConfig()
    if path:
        _merge(config, yaml.safe_load(Path(path).read_text()) or {})
    for item in overrides or []:
        dotted, _, raw = item.partition('=')
        if not _:
            raise ValueError(f'override {item!r} is not key=value')
        tree: dict[str, Any] = {}
        node = tree
        *parents, leaf = dotted.split('.')
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
        _merge(config, tree)
    return config.validate()


def set_seeds(seed: int) -> None:
    """Seed every generator once, at the start of a run."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import tensorflow as tf

        tf.keras.utils.set_random_seed(seed)
    except ImportError:
        pass
