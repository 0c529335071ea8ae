"""Issue 3 benchmark: 5-fold lesion-grouped CV of the paper recipe on ../shared HAM10000.

    uv run python benchmarks/train_cv.py [--set key=value ...]

Prints per-fold and mean +- std F1, recall, precision, ROC-AUC (at the threshold chosen on the
inner validation groups, and at the fold's own max-F1 threshold), recall/specificity at the
sensitivity-0.90 threshold, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import load_config  # noqa: E402
from training.train import run_training  # noqa: E402

COLUMNS = ('f1', 'recall', 'precision', 'specificity', 'roc_auc', 'pr_auc', 'ece')


def print_report(metrics: dict) -> None:
    for key, title in (
        ('at_threshold', 'threshold chosen on inner validation (max F1)'),
        ('at_max_f1_on_fold', 'max-F1 threshold of the scored fold'),
        ('at_sensitivity_threshold', 'sensitivity >= 0.90 threshold chosen on inner validation'),
    ):
        print(f'\n## {title}')
        print('fold  ' + '  '.join(f'{c:>11}' for c in COLUMNS))
        for fold in metrics['cv_folds']:
            row = fold[key]
            print(f'{fold["fold"]:>4}  ' + '  '.join(f'{row[c]:>11.4f}' for c in COLUMNS))
        summary = metrics['cv_summary'][key]
        print(
            'mean  '
            + '  '.join(f'{summary[c]["mean"]:>5.3f}±{summary[c]["std"]:.3f}' for c in COLUMNS)
        )


def print_uncertainty(metrics: dict) -> None:
    print('\n## calibration; referral of the 20 % most uncertain (bound from inner validation)')
    print('ECE before -> after calibration: ', end='')
    summary = metrics['cv_summary']
    before, after = summary['ece_uncalibrated'], summary['at_threshold']['ece']
    print(f'{before["mean"]:.3f}±{before["std"]:.3f} -> {after["mean"]:.3f}±{after["std"]:.3f}')
    u = summary['uncertainty']
    print(f'F1 of all frames: {u["f1_all"]["mean"]:.3f}±{u["f1_all"]["std"]:.3f}')
    titles = ('score', 'error AUROC', 'coverage', 'F1 kept', 'recall kept')
    print('  '.join(f'{t:>12}' for t in titles))
    for name in ('ambiguity', 'entropy', 'epistemic'):
        keys = [f'{k}_{name}' for k in ('error_auroc', 'coverage', 'f1_kept', 'recall_kept')]
        cells = [u.get(k) for k in keys]
        text = ['n/a' if c is None else f'{c["mean"]:.3f}±{c["std"]:.3f}' for c in cells]
        print('  '.join(f'{t:>12}' for t in (name, *text)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=None)
    parser.add_argument('--set', action='append', default=[])
    parser.add_argument('--report', default=None, help='only print the report of a run folder')
    args = parser.parse_args()
    if args.report:
        metrics = json.loads((Path(args.report) / 'metrics.json').read_text())
        print_report(metrics)
        if 'uncertainty' in metrics['cv_summary']:
            print_uncertainty(metrics)
        return 0
    start = time.time()
    run_dir = run_training(load_config(args.config, args.set))
    metrics = json.loads((run_dir / 'metrics.json').read_text())
    print_report(metrics)
    print_uncertainty(metrics)
    print(f'\nwall time {time.time() - start:.0f} s; run folder {run_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
