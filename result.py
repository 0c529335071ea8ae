"""Plots from data/: the main job's results -> PNG figures beside them.

    uv run result.py                 # newest data/runs/*-main
    uv run result.py --run data/runs/20261122T101500Z-main
    uv run result.py --training data/runs/training/mobilenetv2-a0.5-...   # a training run
    uv run result.py --session data/runs/<time>-wearable-int8   # the clinician's HTML report

Writes into the run folder: precision_table.png (size, latency, throughput, F1, energy as
FP32 = 1 ratios, like the paper's table), roc_pr.png, reliability.png, latency_cdf.png and
power.png (the power trace with inference windows, or a note where power was not measured),
operating_points.png (recall, specificity, F1 and melanoma recall per precision at each
operating point, with CIs) and, when the newest run of another imaging domain exists (run.py on
HAM10000 and on --format pad_ufes_20), domains.png: both domains side by side.
For a training run: uncertainty.png (ECE before/after calibration per fold; F1 and sensitivity
of the non-referred frames vs coverage for each uncertainty score, mean over folds).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent
COLOURS = {'fp32': '#1f77b4', 'fp16': '#ff7f0e', 'int8': '#2ca02c'}


def newest_run(root: Path) -> Path:
    runs = sorted(p for p in root.glob('*-main') if (p / 'results.json').is_file())
    if not runs:
        raise FileNotFoundError(f'no results under {root}: run `uv run run.py` first')
    return runs[-1]


def read_csv(path: Path) -> list[dict]:
    from skin_screening.core.recording import read_rows

    return read_rows(path)  # a recorder CSV's blank sticky columns filled in


def scored_rows(row: dict):
    """y, probability, latency (ms), stamps and lesion/patient groups of one replay's frames."""
    rows = read_csv(Path(row['run_dir']) / 'scored.csv')
    return (
        np.array([int(r['y']) for r in rows]),
        np.array([float(r['probability']) for r in rows]),
        np.array([float(r['latency_ms']) for r in rows]),
        [r['stamp_ns'] for r in rows],
        [r.get('group_id', '') for r in rows],
    )


def paired_ratio_intervals(row: dict, ref: dict) -> dict[str, tuple[float, float]]:
    """95 % bootstrap intervals of F1 and median latency relative to `ref`, resampling the
    frames both replays answered (by lesion/patient where the bag has groups)."""
    from skin_screening.core.metrics import binary_report, bootstrap_interval

    y, p, lat, stamps, groups = scored_rows(row)
    _, p_ref, lat_ref, stamps_ref, _ = scored_rows(ref)
    where = {s: i for i, s in enumerate(stamps_ref)}
    i = np.array([k for k, s in enumerate(stamps) if s in where], int)
    if not len(i):
        return {}
    j = np.array([where[stamps[k]] for k in i], int)
    y, p, lat, p_ref, lat_ref = y[i], p[i], lat[i], p_ref[j], lat_ref[j]

    def f1_ratio(k):
        ref_f1 = binary_report(y[k], p_ref[k], ref['threshold'])['f1']
        return binary_report(y[k], p[k], row['threshold'])['f1'] / ref_f1 if ref_f1 else np.nan

    def latency_ratio(k):
        return float(np.median(lat[k]) / np.median(lat_ref[k]))

    g = [groups[k] for k in i]
    return {
        'f1': bootstrap_interval(f1_ratio, len(i), g, n_boot=300),
        'latency_median_ms': bootstrap_interval(latency_ratio, len(i), g, n_boot=300),
    }


def plot_table(rows: list[dict], out: Path, plt) -> None:
    metrics = [
        ('size_mb', 'size'),
        ('latency_median_ms', 'latency'),
        ('throughput_fps', 'throughput'),
        ('f1', 'F1'),
        ('energy_j_per_inference', 'energy'),
    ]
    ref = next((r for r in rows if r['precision'] == 'fp32'), rows[0])
    fig, ax = plt.subplots(figsize=(9, 4.4))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        ratios = [(row[k] / ref[k]) if row.get(k) and ref.get(k) else np.nan for k, _ in metrics]
        intervals = paired_ratio_intervals(row, ref) if 'f1' in row else {}
        low = [r - intervals.get(k, (r, r))[0] for r, (k, _) in zip(ratios, metrics)]
        high = [intervals.get(k, (r, r))[1] - r for r, (k, _) in zip(ratios, metrics)]
        xs = np.arange(len(metrics)) + i * width
        ax.bar(
            xs,
            np.nan_to_num(ratios),
            width,
            yerr=np.clip(np.nan_to_num([low, high]), 0, None),
            capsize=3,
            label=row['precision'],
            color=COLOURS.get(row['precision']),
        )
        for x, v in zip(xs, ratios):
            ax.text(
                x,
                (0 if np.isnan(v) else v) + 0.02,
                'n/m' if np.isnan(v) else f'{v:.2f}',
                ha='center',
                fontsize=8,
            )
    ax.axhline(1.0, color='grey', lw=0.8, ls='--')
    ax.set_xticks(np.arange(len(metrics)) + width * (len(rows) - 1) / 2, [m for _, m in metrics])
    ax.set_ylabel('ratio to FP32 (FP32 = 1)')
    n = ref.get('answered', ref.get('frames', '?'))
    ax.set_title(
        f'Precision table ({rows[0]["backend"]}, n = {n} frames; n/m = not measured here)\n'
        'whiskers: 95 % paired bootstrap interval (F1, latency); size, throughput and '
        'energy: one measurement',
        fontsize=9,
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / 'precision_table.png', dpi=120)


def plot_curves(rows: list[dict], out: Path, plt) -> None:
    from skin_screening.core.metrics import binary_report
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4.2))
    for row in rows:
        y, p = scored_rows(row)[:2]
        fpr, tpr, _ = roc_curve(y, p)
        prec, rec, _ = precision_recall_curve(y, p)
        rep = binary_report(y, p, row['threshold'])
        c = COLOURS.get(row['precision'])
        roc.plot(fpr, tpr, color=c, label=f'{row["precision"]} AUC {rep["roc_auc"]:.3f}')
        pr.plot(rec, prec, color=c, label=f'{row["precision"]} AP {rep["pr_auc"]:.3f}')
    roc.plot([0, 1], [0, 1], color='grey', ls='--', lw=0.8)
    n = f'n = {len(y)}, {int(y.sum())} cancers'
    roc.set(xlabel='false positive rate', ylabel='sensitivity', title=f'ROC (replayed; {n})')
    pr.set(xlabel='recall', ylabel='precision', title=f'Precision-recall (replayed; {n})')
    roc.legend()
    pr.legend()
    fig.tight_layout()
    fig.savefig(out / 'roc_pr.png', dpi=120)


def plot_reliability(rows: list[dict], out: Path, plt, bins: int = 10) -> None:
    from skin_screening.core.metrics import wilson_interval

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    edges = np.linspace(0, 1, bins + 1)
    for k, row in enumerate(rows):
        y, p = scored_rows(row)[:2]
        which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
        used = [b for b in range(bins) if (which == b).any()]
        conf = np.array([p[which == b].mean() for b in used])
        counts = [int((which == b).sum()) for b in used]
        hits = [int(y[which == b].sum()) for b in used]
        acc = np.array([h / c for h, c in zip(hits, counts)])
        ci = np.array([wilson_interval(h, c) for h, c in zip(hits, counts)]).T
        colour = COLOURS.get(row['precision'])
        yerr = np.clip([acc - ci[0], ci[1] - acc], 0, None)
        dodge = (k - (len(rows) - 1) / 2) * 0.008  # whiskers of the precisions side by side
        ax.errorbar(
            conf + dodge, acc, yerr, fmt='o-', capsize=2, color=colour, label=row['precision']
        )
        if k == 0:  # frames per bin: the same frames for every precision
            for x, a, c in zip(conf, acc, counts):
                ax.annotate(f'n={c}', (x, a), xytext=(4, -10), textcoords='offset points', size=7)
    ax.plot([0, 1], [0, 1], color='grey', ls='--', lw=0.8)
    ax.set(
        xlabel='predicted probability of skin cancer',
        ylabel='observed frequency (95 % Wilson interval)',
        title=f'Reliability diagram (n = {len(y)} frames)',
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / 'reliability.png', dpi=120)


def plot_latency(rows: list[dict], out: Path, plt) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    latencies = {row['precision']: np.sort(scored_rows(row)[2]) for row in rows}
    everything = np.concatenate(list(latencies.values()))
    # the body of the distribution, not the few stalls of a shared machine (counted in the title)
    right = min(float(everything.max()), 2.5 * float(np.percentile(everything, 90))) * 1.05
    beyond = int((everything > right).sum())
    for precision, lat in latencies.items():
        ax.plot(
            lat,
            np.arange(1, len(lat) + 1) / len(lat),
            color=COLOURS.get(precision),
            label=f'{precision} median {np.median(lat):.1f} ms, p99 {np.percentile(lat, 99):.1f}',
        )
    ax.set_xlim(0, right)
    clipped = f'\n{beyond} of {len(everything)} beyond the axis (max {everything.max():.0f} ms)'
    ax.set(
        xlabel='frame published -> diagnosis recorded (ms)',
        ylabel='fraction of frames',
        title=f'Latency CDF (replay, n = {len(everything) // len(latencies)} frames each)'
        + (clipped if beyond else ''),
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / 'latency_cdf.png', dpi=120)


def plot_power(rows: list[dict], out: Path, plt) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    measured = False
    for row in rows:
        run = Path(row['run_dir'])
        power = read_csv(run / 'power.csv')
        if not power:
            continue
        measured = True
        t0 = int(power[0]['received_ns'])
        t = [(int(r['received_ns']) - t0) / 1e9 for r in power]
        ax.plot(
            t,
            [float(r['total_watts']) for r in power],
            color=COLOURS.get(row['precision']),
            label=row['precision'],
        )
        diag = read_csv(run / 'diagnoses.csv')
        if diag:
            lo = (int(diag[0]['received_ns']) - t0) / 1e9
            hi = (int(diag[-1]['received_ns']) - t0) / 1e9
            ax.axvspan(lo, hi, color=COLOURS.get(row['precision']), alpha=0.1)
    if measured:
        ax.set(xlabel='time (s)', ylabel='power (W)', title='Power (shaded: inference windows)')
        ax.legend()
    else:
        ax.text(
            0.5,
            0.5,
            'power not measured on this machine: no sensor source found\n'
            'Jetson: INA3221 (/sys/bus/i2c/drivers/ina3221) or tegrastats\n'
            'NVIDIA GPU: pip install nvidia-ml-py (NVML)\n'
            'Intel/AMD CPU: RAPL readable under /sys/class/powercap (root)\n'
            'then: run.py --power-source auto|ina3221|tegrastats|nvml|rapl',
            ha='center',
            va='center',
            transform=ax.transAxes,
        )
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out / 'power.png', dpi=120)


def plot_uncertainty(metrics: dict, out: Path, plt) -> Path:
    folds = metrics['cv_folds']
    fig, (ece, f1, recall) = plt.subplots(1, 3, figsize=(13, 4))
    x = np.arange(len(folds))
    before = [f['ece_uncalibrated'] for f in folds]
    after = [f['at_threshold']['ece'] for f in folds]
    ece.bar(x - 0.2, before, 0.4, label='uncalibrated', color='#bbbbbb')
    ece.bar(x + 0.2, after, 0.4, label='temperature + bias', color='#1f77b4')
    ece.axhline(0.05, color='grey', ls='--', lw=0.8)
    ece.set(xticks=x, xticklabels=[f'fold {f["fold"]}' for f in folds], ylabel='ECE')
    ece.set_title('Calibration (goal <= 0.05)')
    ece.legend()
    for name in folds[0]['uncertainty']['curves']:
        curves = [f['uncertainty']['curves'][name] for f in folds]
        coverage = [c['coverage'] for c in curves[0]]
        for ax, key in ((f1, 'f1'), (recall, 'recall')):
            mean = np.nanmean([[c[key] for c in curve] for curve in curves], axis=0)
            ax.plot(coverage, mean, 'o-', label=f'refer by {name}')
    for ax, title in ((f1, 'F1'), (recall, 'sensitivity')):
        ax.set(xlabel='coverage (frames not referred)', ylabel=title, xlim=(1.02, 0.48))
        ax.set_title(f'{title} of the non-referred frames')
        ax.legend()
    fig.tight_layout()
    path = out / 'uncertainty.png'
    fig.savefig(path, dpi=120)
    return path


def other_domain_points(run: Path, results: dict) -> list[dict]:
    """Operating-point rows of the newest run of each OTHER imaging domain beside `run`."""
    rows, seen = [], {results.get('domain')}
    for other in sorted(run.parent.glob('*-main'), reverse=True):
        try:
            found = json.loads((other / 'results.json').read_text())
        except (FileNotFoundError, ValueError):
            continue
        if found.get('domain') and found['domain'] not in seen and found.get('operating_points'):
            seen.add(found['domain'])
            rows += found['operating_points']
    return rows


def plot_points(points: list[dict], out: Path, plt, name: str = 'operating_points') -> Path:
    """Recall, specificity, F1 and melanoma recall per precision at each operating point (a
    domain's points carry its name), with the 95 % grouped-bootstrap intervals (the frames the
    gate judged)."""
    names = list(dict.fromkeys(r['operating_point'] for r in points))
    precisions = list(dict.fromkeys(r['precision'] for r in points))
    cells = {(r['precision'], r['operating_point']): r for r in points}
    nothing = {k: np.nan for k in ('recall', 'specificity', 'f1')}
    nothing |= {f'{k}_ci': (np.nan, np.nan) for k in nothing}
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8), sharey=True)
    width = 0.8 / len(precisions)
    for ax, key in zip(axes, ('recall', 'specificity', 'f1', 'melanoma')):
        ax.set_title('melanoma recall' if key == 'melanoma' else key)
        for j, precision in enumerate(precisions):
            rows = [cells.get((precision, n), nothing) for n in names]
            if key == 'melanoma':
                rows = [r.get('melanoma', nothing) for r in rows]
            value = np.array([r['recall' if key == 'melanoma' else key] for r in rows], float)
            ci = np.array([r[f'{"recall" if key == "melanoma" else key}_ci'] for r in rows]).T
            x = np.arange(len(names)) + (j - (len(precisions) - 1) / 2) * width
            ax.bar(x, value, width, color=COLOURS.get(precision.split('/')[0]), label=precision)
            ax.errorbar(x, value, yerr=[value - ci[0], ci[1] - value], fmt='none', ecolor='k')
        ax.set_xticks(np.arange(len(names)), names, rotation=15, fontsize=8)
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=8, loc='lower left')
    fig.suptitle('each precision at each operating point (95 % grouped-bootstrap intervals)')
    fig.tight_layout()
    path = out / f'{name}.png'
    fig.savefig(path, dpi=120)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--run', type=Path, default=None, help='a data/runs/*-main folder')
    parser.add_argument('--training', type=Path, default=None, help='a training run folder')
    parser.add_argument(
        '--session',
        type=Path,
        default=None,
        help='a recorder run folder: one self-contained HTML report for the clinician',
    )
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if args.session:
        from skin_screening.core.session_report import build_report

        try:
            print(build_report(args.session))
        except (FileNotFoundError, ValueError, KeyError) as exc:
            print(f'error: {exc}', file=sys.stderr)
            return 2
        return 0
    if args.training:
        try:
            metrics = json.loads((args.training / 'metrics.json').read_text())
        except (FileNotFoundError, ValueError) as exc:
            print(f'error: {exc}', file=sys.stderr)
            return 2
        print(plot_uncertainty(metrics, args.training, plt))
        return 0

    try:
        run = args.run or newest_run(REPO / 'data' / 'runs')
        results = json.loads((run / 'results.json').read_text())
        rows = results['rows']
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    plots = {
        'precision_table': plot_table,
        'roc_pr': plot_curves,
        'reliability': plot_reliability,
        'latency_cdf': plot_latency,
        'power': plot_power,
    }
    if 'f1' not in rows[0]:  # a bag without ground truth: nothing to score
        print('the replayed bag had no labels: accuracy plots skipped', file=sys.stderr)
        plots = {'power': plot_power}
    for name, plot in plots.items():
        plot(rows, run, plt)
        plt.close('all')
        print(run / f'{name}.png')
    if results.get('operating_points'):
        print(plot_points(results['operating_points'], run, plt))
        if others := other_domain_points(run, results):
            print(plot_points(results['operating_points'] + others, run, plt, 'domains'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
