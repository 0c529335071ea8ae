"""Issue 8 benchmark: every model of the training package through the same variants and engine.

    uv run python benchmarks/models_table.py RUN [RUN ...] [--threads 2] [--limit N]

RUN: training run folders (5-fold lesion-grouped CV on ../shared HAM10000, same seed/split).
Per model: parameters and MFLOPs (from the ONNX graph), zero fraction of the weights, ONNX size
per precision (and gzip-compressed FP32 size: what zeros can buy), ONNX Runtime CPU latency per
precision (batch 1, median of rounds interleaved across every model and precision, so host
noise hits them alike), CV F1 / ROC-AUC mean ± std at the inner-validation threshold, and
the release fold's held-out F1 per precision. Variants are built in a temporary copy.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skin_screening.core.classifier import Classifier  # noqa: E402
from skin_screening.core.preprocess import load_rgb, resize  # noqa: E402

from training.complexity import complexity  # noqa: E402
from training.evaluate import engine_call, evaluate_variants, interleaved_ms  # noqa: E402
from training.variants import VariantConfig, build_variants  # noqa: E402

PRECISIONS = ('fp32', 'fp16', 'int8')


def zero_fraction(onnx_path: Path) -> float:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    weights = [
        numpy_helper.to_array(t)
        for t in onnx.load(str(onnx_path)).graph.initializer
        if t.data_type == 1 and np.prod(t.dims) > 1
    ]
    return float(sum((w == 0).sum() for w in weights) / sum(w.size for w in weights))


def measure(run: Path, work: Path, threads: int, limit: int | None) -> dict:
    """Row of one model; its variants are built in `work` (a copy of the run)."""
    card = json.loads((run / 'model_card.json').read_text())
    cv = json.loads((run / 'metrics.json').read_text())['cv_summary']['at_threshold']
    fp32 = run / 'model.fp32.onnx'
    row = {
        'model': card['name'],
        'architecture': card['architecture'],
        'folds': len(json.loads((run / 'metrics.json').read_text())['cv_folds']),
        **complexity(fp32),
        'zeros': zero_fraction(fp32),
        'gzip_mb': len(gzip.compress(fp32.read_bytes())) / 1e6,
        'f1': cv['f1'],
        'roc_auc': cv['roc_auc'],
    }
    shutil.copytree(run, work, ignore=shutil.ignore_patterns('fold_logits.npz'))
    build_variants(work, VariantConfig(precisions=('fp16', 'int8')))
    for r in evaluate_variants(work, precisions=PRECISIONS, limit=limit, threads=threads):
        row |= {f'{r["precision"]}_mb': r['size_mb'], f'{r["precision"]}_f1': r['f1']}
    return row


def interleaved_latency(works: list[Path], threads: int, rounds: int) -> list[dict]:
    """Batch-1 ms per model and precision, every engine timed in every round."""
    frames = [load_rgb(p) for p in sorted((REPO / 'data/samples/images').glob('*.jpg'))[:8]]
    clfs = {
        (i, p): Classifier(work, p, threads=threads)
        for i, work in enumerate(works)
        for p in PRECISIONS
    }
    try:
        calls = {}
        for (i, p), clf in clfs.items():
            views = clf.rule.views
            crops = np.stack([resize(f, clf.card.preprocessing) for f in frames[:1]])
            calls[(i, p)] = engine_call(clf, crops, views)
        times = interleaved_ms(calls, rounds, block=10)
    finally:
        for clf in clfs.values():
            clf.close()
    medians = {key: statistics.median(ms) for key, ms in times.items()}
    return [{f'{p}_ms': medians[(i, p)] for p in PRECISIONS} for i in range(len(works))]


def print_table(rows: list[dict]) -> None:
    print(
        f'{"model":<28} {"params":>8} {"MFLOPs":>7} {"zeros":>6} '
        + ' '.join(f'{p + " MB":>8}' for p in PRECISIONS)
        + f' {"gz MB":>6} '
        + ' '.join(f'{p + " ms":>8}' for p in PRECISIONS)
        + f' {"CV F1":>12} {"CV ROC-AUC":>12} '
        + ' '.join(f'{p + " F1":>8}' for p in PRECISIONS)
    )
    for r in rows:
        print(
            f'{r["model"]:<28} {r["parameters"] / 1e6:>7.3f}M {r["mflops"]:>7.1f} '
            f'{r["zeros"]:>6.2f} '
            + ' '.join(f'{r.get(p + "_mb", float("nan")):>8.3f}' for p in PRECISIONS)
            + f' {r["gzip_mb"]:>6.3f} '
            + ' '.join(f'{r.get(p + "_ms", float("nan")):>8.2f}' for p in PRECISIONS)
            + f' {r["f1"]["mean"]:>6.3f}±{r["f1"]["std"]:.3f}'
            + f' {r["roc_auc"]["mean"]:>6.3f}±{r["roc_auc"]["std"]:.3f} '
            + ' '.join(f'{r.get(p + "_f1", float("nan")):>8.3f}' for p in PRECISIONS)
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('runs', nargs='+', type=Path)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--limit', type=int, default=None, help='held-out images per model')
    p.add_argument('--rounds', type=int, default=30, help='rounds of 10 timed calls per engine')
    p.add_argument('--out', type=Path, default=REPO / 'data/benchmarks/models/models.json')
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        works = [Path(tmp) / f'{i}-{run.name}' for i, run in enumerate(args.runs)]
        rows = [measure(*pair, args.threads, args.limit) for pair in zip(args.runs, works)]
        for row, ms in zip(rows, interleaved_latency(works, args.threads, args.rounds)):
            row |= ms
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print(f'\nwritten to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
