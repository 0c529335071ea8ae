"""Issue 22: interpolate two runs' fold models between dermoscopy-first and joint training.

    uv run python benchmarks/domain_soup.py RUN_A RUN_B [--lambdas 0 0.25 0.5 0.75 1]

RUN_A and RUN_B are cached-recipe runs of the same data and split (e.g. A: dermoscopy first,
adapted under the dermoscopic guard, `train.pretrain_domain`; B: the joint recipe). Both tops
start from the same ImageNet weights, so each fold's weights can be mixed: (1 - l) A + l B.
Per l it prints the per-domain ROC-AUC on every fold's inner validation images (what a choice
of l may look at) and on its test fold (mean ± std over folds), and which l the rule "best mean
validation ROC-AUC among those whose mean dermoscopic validation ROC-AUC is at most --tolerance
below the first l's" picks, for tolerance 0 and the given one. Nothing is written: this
measures whether weight interpolation is worth a recipe.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.config import load_config  # noqa: E402
from training.data import grouped_folds, inner_split, load_dataset  # noqa: E402
from training.features import training_activations  # noqa: E402
from training.model import build_model  # noqa: E402
from training.recipe import domain_aucs, predict_logits  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('run_a', type=Path)
    parser.add_argument('run_b', type=Path)
    parser.add_argument('--lambdas', type=float, nargs='+', default=[0, 0.25, 0.5, 0.75, 1])
    parser.add_argument('--tolerance', type=float, default=0.005)
    args = parser.parse_args()
    if (args.run_a / 'split.csv').read_bytes() != (args.run_b / 'split.csv').read_bytes():
        sys.exit('the two runs used other images or another split')
    cfg = load_config(args.run_a / 'config.yaml')
    data = load_dataset(cfg.data)
    model = build_model(cfg.model)
    acts, data = training_activations(data, model.front, cfg.model.preprocessing(), cfg)
    fold = grouped_folds(data, cfg.split, cfg.seed)
    rows = {lam: {'val': [], 'test': []} for lam in args.lambdas}
    for k in range(cfg.split.folds):
        test = np.nonzero(fold == k)[0]
        _, val = inner_split(
            data, np.nonzero(fold != k)[0], cfg.split.inner_val_fraction, cfg.seed + k
        )
        ends = []
        for run in (args.run_a, args.run_b):
            model.top.load_weights(run / f'fold{k}.top.weights.h5')
            ends.append(model.top.get_weights())
        for lam in args.lambdas:
            model.top.set_weights([(1 - lam) * a + lam * b for a, b in zip(*ends)])
            for name, index in (('val', val), ('test', test)):
                logits = predict_logits(model.top, acts, index)
                rows[lam][name].append(domain_aucs(data.y[index], logits, data.domains[index]))
            shown = {n: {d: round(a, 3) for d, a in rows[lam][n][-1].items()} for n in rows[lam]}
            print(f'fold {k} l={lam:.2f} {shown}', flush=True)
    domains = sorted(rows[args.lambdas[0]]['val'][0])
    print('\nl     ' + ''.join(f'val {d:<14}test {d:<20}' for d in domains))
    for lam, row in rows.items():
        cells = []
        for d in domains:
            v = [r[d] for r in row['val']]
            t = [r[d] for r in row['test']]
            cells.append(f'{np.mean(v):.4f}{"":13}{np.mean(t):.4f} ± {np.std(t):.4f}{"":8}')
        print(f'{lam:.2f}  ' + ''.join(cells))

    def mean(lam, name, domain=None):
        return float(
            np.mean([r[domain] if domain else np.mean(list(r.values())) for r in rows[lam][name]])
        )

    reference = mean(args.lambdas[0], 'val', 'dermoscopic')
    for tolerance in sorted({0.0, args.tolerance}):
        allowed = [
            lam for lam in args.lambdas if mean(lam, 'val', 'dermoscopic') >= reference - tolerance
        ]
        best = max(allowed, key=lambda lam: mean(lam, 'val'))
        derm = mean(best, 'val', 'dermoscopic')
        print(
            f'rule on validation (best mean ROC-AUC, dermoscopic at most {tolerance} below '
            f'{reference:.5f}): l = {best} (dermoscopic validation {derm:.5f})'
        )


if __name__ == '__main__':
    main()
