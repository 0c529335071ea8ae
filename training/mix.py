"""Weight interpolation of two runs' fold models, one mixing weight chosen on validation.

`train.mix_runs: [A, B]` names two cached-recipe runs of the same images, split and model whose
fold tops all started from the same ImageNet top (e.g. A trained dermoscopy first,
`train.pretrain_domain`; B the joint recipe). Fold k's top becomes (1 - l) A_k + l B_k, with ONE
l for every fold, chosen on the folds' inner validation images only: among the candidate l
whose mean validation ROC-AUC on the first domain (the reference data: dermoscopy) is at most
`train.mix_tolerance` below l = 0's, the one with the best mean per-domain validation ROC-AUC.
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
    table: dict[float, dict[str, list[dict]]]  # l -> part -> per-fold {domain: ROC-AUC}
    chosen: float = 0.0
    sources: list[dict] = field(default_factory=list)  # each run's config and fold files

    def weights(self, k: int, lam: float | None = None) -> list:
        a, b = self.ends[k]
        lam = self.chosen if lam is None else lam
        return [(1 - lam) * x + lam * y for x, y in zip(a, b)]

    def mean(self, lam: float, part: str = 'val', domain: str = '') -> float:
        rows = self.table[lam][part]
        return float(np.mean([r[domain] if domain else np.mean(list(r.values())) for r in rows]))

    def report(self) -> dict:
        domains = sorted(self.table[self.chosen]['val'][0])
        return {
            'runs': self.runs,
            'sources': self.sources,
            'lambda': self.chosen,
            'validation_roc_auc': {
                str(lam): {d: self.mean(lam, 'val', d) for d in domains} for lam in self.table
            },
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


def score_mixes(mix: Mix, top, acts, data: LabelledSet, parts: dict[int, dict]) -> None:
    """Fill mix.table: per candidate l and fold, per-domain ROC-AUC of each named index set."""
    for lam in mix.table:
        for k, named in parts.items():
            top.set_weights(mix.weights(k, lam))
            for name, index in named.items():
                logits = predict_logits(top, acts, index)
                aucs = domain_aucs(data.y[index], logits, data.domains[index])
                mix.table[lam].setdefault(name, []).append(aucs)


def choose(mix: Mix, reference: str, tolerance: float) -> float:
    floor = mix.mean(0.0, 'val', reference) - tolerance
    allowed = [lam for lam in mix.table if mix.mean(lam, 'val', reference) >= floor]
    return max(allowed, key=lambda lam: (mix.mean(lam), -lam))


def mix_folds(
    cfg: RunConfig, top, acts, data: LabelledSet, fold: np.ndarray, split_file: Path, test=False
):
    """The run's Mix: both runs' fold weights, validation table (and with `test` the test
    folds' table too, for study: the choice never looks at it), chosen l (printed)."""
    folds = cfg.split.trained_folds()
    ends, sources = load_ends(cfg, top, cfg.train.mix_runs, split_file, folds)
    lambdas = {float(lam): {} for lam in cfg.train.mix_lambdas}
    mix = Mix(list(cfg.train.mix_runs), ends, lambdas, sources=sources)
    parts = {}
    for k in folds:
        val = fold_fit_val(data, fold, k, cfg.split.inner_val_fraction, cfg.seed)[1]
        parts[k] = {'val': val} | ({'test': np.nonzero(fold == k)[0]} if test else {})
    score_mixes(mix, top, acts, data, parts)
    mix.chosen = choose(mix, data.domain_names[0], cfg.train.mix_tolerance)
    for lam, aucs in mix.report()['validation_roc_auc'].items():
        shown = {d: round(a, 4) for d, a in aucs.items()}
        chosen = ' <- chosen' * (float(lam) == mix.chosen)
        print(f'mix l={float(lam):.2f}: validation ROC-AUC {shown}{chosen}')
    return mix
