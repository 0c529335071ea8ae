"""Weight interpolation of two runs' fold models, one mixing weight per fold chosen on validation.

`train.mix_runs: [A, B]` names two cached-recipe runs of the same images, split and model whose
fold tops all started from the same ImageNet top (e.g. A trained dermoscopy first,
`train.pretrain_domain`; B the joint recipe). Fold k's top becomes (1 - l_k) A_k + l_k B_k, l_k
chosen on FOLD k's OWN inner validation images (nested: no image of test fold k, and for the
release model none of the held-out fold, chooses its l; training/choosing.py records them):
among the candidate l whose validation ROC-AUC on the first domain (the reference data:
dermoscopy) is at most a tolerance below l = 0's, the one with the best mean per-domain
validation ROC-AUC, the smaller l on a tie. The tolerance: `train.mix_tolerance`, or by default
(None) one standard error of that paired difference, bootstrapped over the lesions / patients
of the same validation images - set by those images alone, not by any figure of a test fold.
No training: the run then scores, calibrates and exports each mixed fold model as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import RunConfig, load_config
from .data import DataError, LabelledSet, fold_fit_val
from .recipe import domain_aucs, predict_logits


@dataclass
class Mix:
    runs: list[str]
    ends: dict[int, tuple[list, list]]  # fold -> (A's top weights, B's)
    table: dict[float, dict[str, dict[int, dict]]]  # l -> part -> fold -> {domain: ROC-AUC}
    chosen: dict[int, float] = field(default_factory=dict)  # fold -> l
    tolerance: dict[int, dict[float, float]] = field(default_factory=dict)  # fold -> l -> tol
    chosen_on: dict[int, list[str]] = field(default_factory=dict)  # fold -> ids that chose l
    sources: list[dict] = field(default_factory=list)  # each run's config and fold files

    def weights(self, k: int, lam: float | None = None) -> list:
        a, b = self.ends[k]
        lam = self.chosen[k] if lam is None else lam
        return [(1 - lam) * x + lam * y for x, y in zip(a, b)]

    def auc(self, lam: float, k: int, part: str = 'val', domain: str = '') -> float:
        row = self.table[lam][part][k]
        return float(row[domain] if domain else np.mean(list(row.values())))

    def mean(self, lam: float, part: str = 'val', domain: str = '') -> float:
        """Mean over folds (for study: no choice reads it)."""
        return float(np.mean([self.auc(lam, k, part, domain) for k in self.table[lam][part]]))

    def report(self, holdout: int) -> dict:
        folds = sorted(self.chosen)
        domains = sorted(self.table[0.0]['val'][folds[0]])
        return {
            'runs': self.runs,
            'sources': self.sources,
            'lambda': self.chosen.get(holdout),  # the release model's
            'lambda_per_fold': {str(k): self.chosen[k] for k in folds},
            'tolerance_per_fold': {
                str(k): {str(lam): t for lam, t in self.tolerance[k].items()} for k in folds
            },
            'validation_roc_auc': {
                str(k): {
                    str(lam): {d: self.auc(lam, k, 'val', d) for d in domains}
                    for lam in self.table
                }
                for k in folds
            },  # fmt: skip
            'chosen_on': "each fold's own inner validation images (choosing/mix.json)",
        }


def load_ends(cfg: RunConfig, top, runs: list[str], split_file: Path, folds: list[int]):
    """-> (each fold's top weights of both runs, each run's resolved config and fold-file
    hashes), after checking that the runs match this one."""
    from skin_screening.core.model_card import sha256_file

    ends, sources = {k: ([], []) for k in folds}, []
    for side, run in enumerate(Path(r) for r in runs):
        if not (run / 'split.csv').is_file() or not (run / 'config.yaml').is_file():
            raise DataError(f'train.mix_runs: {run} is not a training run')
        if (run / 'split.csv').read_bytes() != split_file.read_bytes():
            raise DataError(f'train.mix_runs: {run} used other images or another split')
        config = load_config(run / 'config.yaml')
        if config.model != cfg.model:
            raise DataError(f'train.mix_runs: {run} trained another model (config model:)')
        hashes = {}
        for k in folds:
            path = run / f'fold{k}.top.weights.h5'
            if not path.is_file():
                raise DataError(f'train.mix_runs: {run} has no fold {k} model ({path.name})')
            top.load_weights(path)
            ends[k][side].extend(top.get_weights())
            hashes[path.name] = sha256_file(path)
        sources.append({'run': str(run), 'config': config.to_dict(), 'sha256': hashes})
    return ends, sources


def rank_auc(y: np.ndarray, s: np.ndarray) -> float:
    from scipy.stats import rankdata

    pos = y == 1
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if not n1 or not n0:
        return float('nan')
    return float((rankdata(s)[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def paired_se(y, base, other, groups, seed: int, n: int = 200) -> float:
    """Standard error of AUC(other) - AUC(base) on the same images, bootstrapped over whole
    groups (lesions, patients)."""
    from skin_screening.core.metrics import bootstrap_values

    def diff(i):
        return rank_auc(y[i], other[i]) - rank_auc(y[i], base[i])

    return float(np.std(bootstrap_values(diff, len(y), [str(g) for g in groups], n, seed)))


def score_mixes(mix: Mix, top, acts, data: LabelledSet, parts: dict[int, dict], seed: int) -> None:
    """Fill mix.table (per candidate l and fold, per-domain ROC-AUC of each named index set) and
    mix.tolerance (per fold and l: the bootstrap SE of the reference-domain validation ROC-AUC
    difference to l = 0)."""
    reference = data.domain_names[0]
    for k, named in parts.items():
        ref_logits = {}
        for lam in mix.table:
            top.set_weights(mix.weights(k, lam))
            for name, index in named.items():
                logits = predict_logits(top, acts, index)
                aucs = domain_aucs(data.y[index], logits, data.domains[index])
                mix.table[lam].setdefault(name, {})[k] = aucs
                if name == 'val':
                    ref_logits[lam] = logits.mean(axis=1)[data.domains[index] == reference]
        val = named['val']
        mine = data.domains[val] == reference
        y, groups = data.y[val][mine], data.groups[val][mine]
        mix.tolerance[k] = {
            lam: paired_se(y, ref_logits[0.0], z, groups, seed + k) if lam else 0.0
            for lam, z in ref_logits.items()
        }


def choose(mix: Mix, reference: str, k: int) -> float:
    """Fold k's l: the best mean validation ROC-AUC among the l whose reference-domain
    validation ROC-AUC is at most mix.tolerance[k][l] below l = 0's."""

    def allowed(lam: float) -> bool:
        floor = mix.auc(0.0, k, 'val', reference) - mix.tolerance[k][lam]
        return mix.auc(lam, k, 'val', reference) >= floor

    return max(filter(allowed, mix.table), key=lambda lam: (mix.auc(lam, k), -lam))


def choosing_images(data: LabelledSet, fold: np.ndarray, k: int, cfg: RunConfig) -> np.ndarray:
    """The images that choose fold k's l: its own inner validation (within its training folds)."""
    return fold_fit_val(data, fold, k, cfg.split.inner_val_fraction, cfg.seed)[1]


def mix_folds(
    cfg: RunConfig, top, acts, data: LabelledSet, fold: np.ndarray, split_file: Path, test=False
):
    """The run's Mix: both runs' fold weights, validation table (and with `test` the test
    folds' table too, for study: the choice never looks at it), each fold's l (printed) and
    the ids that chose it (mix.chosen_on, for the run's choosing record)."""
    folds = cfg.split.trained_folds()
    ends, sources = load_ends(cfg, top, cfg.train.mix_runs, split_file, folds)
    lambdas = {float(lam): {} for lam in cfg.train.mix_lambdas}
    mix = Mix(list(cfg.train.mix_runs), ends, lambdas, sources=sources)
    parts = {}
    for k in folds:
        val = choosing_images(data, fold, k, cfg)
        parts[k] = {'val': val} | ({'test': np.nonzero(fold == k)[0]} if test else {})
    score_mixes(mix, top, acts, data, parts, cfg.seed)
    for k in folds:
        if cfg.train.mix_tolerance is not None:  # a fixed tolerance instead of the SE
            mix.tolerance[k] = dict.fromkeys(mix.table, float(cfg.train.mix_tolerance))
        mix.chosen[k] = choose(mix, data.domain_names[0], k)
        for lam in mix.table:
            shown = {d: round(a, 4) for d, a in mix.table[lam]['val'][k].items()}
            chosen = ' <- chosen' * (lam == mix.chosen[k])
            tol = mix.tolerance[k][lam]
            print(f'fold {k} l={lam:.2f}: val ROC-AUC {shown} (tolerance {tol:.4f}){chosen}')
    mix.chosen_on = {k: [data.ids[i] for i in parts[k]['val']] for k in folds}
    return mix
