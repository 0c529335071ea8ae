"""Issue 22: interpolate two runs' fold models between dermoscopy-first and joint training.

    uv run python benchmarks/domain_soup.py RUN_A RUN_B [--lambdas 0 0.25 0.5 0.75 1]

RUN_A and RUN_B: cached-recipe runs of the same images, split and model (e.g. A dermoscopy
first, `train.pretrain_domain`; B the joint recipe), mixed per fold as `train.mix_runs` does
(training/mix.py). Per l it prints the per-domain ROC-AUC on every fold's inner validation images
(each fold's l looks at its own) and on its test fold (mean ± std over folds), and the l per
fold that training/mix.py's rule picks on validation with its bootstrap-SE tolerance, 0 and
--tolerance. Nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.config import load_config  # noqa: E402
from training.data import grouped_folds, load_dataset  # noqa: E402
from training.features import training_activations  # noqa: E402
from training.mix import choose, mix_folds  # noqa: E402
from training.model import build_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('run_a', type=Path)
    parser.add_argument('run_b', type=Path)
    parser.add_argument('--lambdas', type=float, nargs='+', default=[0, 0.25, 0.5, 0.75, 1])
    parser.add_argument('--tolerance', type=float, default=0.005)
    args = parser.parse_args()
    runs = f'[{args.run_a}, {args.run_b}]'
    lambdas = f'[{", ".join(str(x) for x in args.lambdas)}]'
    cfg = load_config(
        args.run_a / 'config.yaml',
        [f'train.mix_runs={runs}', f'train.mix_lambdas={lambdas}'],  # tolerance: the SE
    )
    data = load_dataset(cfg.data)
    model = build_model(cfg.model)
    acts, data = training_activations(data, model.front, cfg.model.preprocessing(), cfg)
    fold = grouped_folds(data, cfg.split, cfg.seed)
    mix = mix_folds(cfg, model.top, acts, data, fold, args.run_a / 'split.csv', test=True)
    domains = data.domain_names
    print('l     ' + ''.join(f'val {d:<14}test {d:<20}' for d in domains))
    for lam in mix.table:
        cells = []
        for d in domains:
            test = [r[d] for r in mix.table[lam]['test'].values()]
            cells.append(f'{mix.mean(lam, "val", d):.5f}{"":12}')
            cells.append(f'{np.mean(test):.4f} ± {np.std(test):.4f} {np.round(test, 3)}  ')
        print(f'{lam:.2f}  ' + ''.join(cells))
    se = mix.tolerance
    for name, tolerance in [
        ('one bootstrap SE', None),
        *((f'{t:g}', t) for t in sorted({0.0, args.tolerance})),
    ]:
        mix.tolerance = (
            se if tolerance is None else {k: dict.fromkeys(mix.table, tolerance) for k in se}
        )
        chosen = {k: choose(mix, domains[0], k) for k in se}
        print(f'rule, tolerance {name}: l per fold {chosen}')


if __name__ == '__main__':
    main()
