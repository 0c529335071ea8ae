"""Issues 18 and 22: the backbone table of the zoo's MobileNetV2 models, timed in one run.

    uv run python benchmarks/backbones.py [MODEL_DIR ...]   # default: the two MobileNetV2s

Per model folder: 5-fold CV ROC-AUC (mean ± std over the card's folds; dermoscopic), the clinical
photographs' ROC-AUC (patient-grouped CV where the model trained on them, else all 441 through
the FP32 engine), F1 at both dermoscopic operating points on the pooled out-of-fold predictions
(± the spread over folds), the weights file it was
trained from, file sizes, and single-frame engine latency of FP32 and INT8 (ONNX Runtime, all
engines timed in interleaved blocks so host noise hits them alike; medians).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skin_screening.core.classifier import Classifier  # noqa: E402
from skin_screening.core.model_card import ModelCard  # noqa: E402
from skin_screening.core.preprocess import load_rgb, resize  # noqa: E402

from training.evaluate import engine_call, interleaved_ms  # noqa: E402

PAD = REPO.parent / 'shared' / 'datasets' / 'pad_ufes_20'
ZOO = [REPO / 'data/models/mobilenetv2-a0.5', REPO / 'data/models/mobilenetv2-a1.0-clinical']


def clinical_auc(model: Path, card: ModelCard) -> str:
    """The clinical photographs' ROC-AUC: the patient-grouped CV's where the model trained on
    them (python -m training domain-cv), else the FP32 engine on all 441 (none trained on)."""
    cv = card.metrics.get('domain_cv', {}).get('domains', {}).get('clinical')
    if cv:
        return f'{cv["roc_auc"]["mean"]:.3f} ± {cv["roc_auc"]["std"]:.3f}'
    from sklearn.metrics import roc_auc_score

    from training.config import DataConfig
    from training.data import load_dataset

    data = load_dataset(DataConfig(format='pad_ufes_20', root=str(PAD)))
    clf = Classifier(model, 'fp32', gate=False)
    try:
        p = [clf.classify([load_rgb(path)])[0].probability[0] for path in data.paths]
    finally:
        clf.close()
    return f'{roc_auc_score(data.y, p):.3f} (441)'


def card_row(model: Path) -> dict:
    card = ModelCard.load(model)
    auc = card.metrics['cv_summary']['at_threshold']['roc_auc']
    points = card.operating_points['points']
    weights = card.training.get('weights', '')
    return {
        'model': card.name,
        'cv_auc': f'{auc["mean"]:.3f} ± {auc["std"]:.3f}',
        'clinical_auc': clinical_auc(model, card),
        **{
            f'f1_{name}': f'{p["pooled_oof"]["f1"]:.3f} ± {p["spread"]["f1"]["std"]:.3f}'
            for name, p in points.items()
        },
        'fp32_mb': card.files['model.fp32.onnx']['bytes'] / 1e6,
        'int8_mb': card.files['model.int8-u8.onnx']['bytes'] / 1e6,
        'weights': weights.split('sha256 ')[-1][:12] if 'sha256' in weights else weights[:40],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('models', nargs='*', type=Path, default=ZOO)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--rounds', type=int, default=20)
    args = p.parse_args()
    rows = [card_row(m) for m in args.models]
    frame = load_rgb(next((REPO / 'data/samples/images').glob('*.jpg')))
    clfs = {
        (i, precision): Classifier(m, precision, threads=args.threads)
        for i, m in enumerate(args.models)
        for precision in ('fp32', 'int8')
    }
    try:
        calls = {
            key: engine_call(clf, resize(frame, clf.card.preprocessing)[None], 1)
            for key, clf in clfs.items()
        }
        times = interleaved_ms(calls, args.rounds, block=10)
    finally:
        for clf in clfs.values():
            clf.close()
    head = (
        f'{"model":<26} {"CV ROC-AUC":>13} {"clinical AUC":>13} {"F1 screening":>14} '
        f'{"F1 balanced":>14} '
        f'{"fp32 MB":>8} {"int8 MB":>8} {"fp32 ms":>8} {"int8 ms":>8}  weights (sha256)'
    )
    print(head)
    for i, r in enumerate(rows):
        fp32, int8 = (statistics.median(times[(i, p)]) for p in ('fp32', 'int8'))
        print(
            f'{r["model"]:<26} {r["cv_auc"]:>13} {r["clinical_auc"]:>13} '
            f'{r["f1_screening"]:>14} {r["f1_balanced"]:>14} '
            f'{r["fp32_mb"]:>8.2f} {r["int8_mb"]:>8.2f} {fp32:>8.2f} {int8:>8.2f}  {r["weights"]}'
        )
    print(f'latency: median of {len(next(iter(times.values())))} single-frame calls per engine')
    return int(not np.isfinite(fp32))


if __name__ == '__main__':
    sys.exit(main())
