"""python -m training {train,release,variants,operating-points,gate,evaluate,domain-cv,cam,
                    check-choices} ...

(see --help of each).
"""

from __future__ import annotations

import argparse
import sys


def _train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .train import run_training

    config = load_config(args.config, args.set)
    run_training(config)
    return 0


def _variants(args: argparse.Namespace) -> int:
    from .variants import VariantConfig, build_variants

    config = VariantConfig(
        calibration_images=args.calibration_images,
        calibration_method=args.calibration_method,
        histogram_bins=args.histogram_bins,
        backends=tuple(args.backend),
        precisions=tuple(args.precision),
        **({} if args.keep_float is None else {'keep_float': tuple(args.keep_float)}),
    )
    for path in build_variants(args.model_dir, config, args.calibration_data):
        print(path)
    return 0


def _operating_points(args: argparse.Namespace) -> int:
    from .operating_points import write_operating_points

    write_operating_points(args.model_dir, args.cv_run)
    return 0


def _check_choices(args: argparse.Namespace) -> int:
    from .choosing import summary, violations

    found = violations(args.folder)
    for line in found:
        print(f'violation: {line}')
    if not found:
        counted = {stage: sum(folds.values()) for stage, folds in summary(args.folder).items()}
        print(f'{args.folder}: no test-fold image chose anything ({counted} ids checked)')
    return 1 if found else 0


def _gate(args: argparse.Namespace) -> int:
    """Without --camera-bag: fit the gate. With it: add the camera to the model's gate (fitted
    first where there is none yet, or where --clinical asks for a refit)."""
    from skin_screening.core.model_card import ModelCard

    from .gate import fit_and_judge
    from .gate_camera import fit_camera

    if args.camera_bag is None or args.clinical or not ModelCard.load(args.model_dir).gate:
        fit_and_judge(args.model_dir, args.clinical)
    if args.camera_bag is not None:
        fit_camera(args.model_dir, args.camera_bag, args.topic)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_all, print_points, print_table

    rows, points = evaluate_all(
        args.model_dir,
        args.images,
        precisions=args.precision,
        backends=args.backend,
        limit=args.limit,
        threads=args.threads,
        out=args.out,
    )
    print_table(rows)
    print_points(points)
    return 0


def _domain_cv(args: argparse.Namespace) -> int:
    from .domain_cv import run_domain_cv

    run_domain_cv(args.run, args.baseline, args.int8)
    return 0


def _release(args: argparse.Namespace) -> int:
    from .release import release

    print(release(args.run, args.to, args.replace))
    return 0


def _cam(args: argparse.Namespace) -> int:
    from pathlib import Path

    from skin_screening.core.classifier import Classifier
    from skin_screening.core.preprocess import load_rgb

    from .explain import ensure_cam, heldout_examples, write_overlays

    model_dir = Path(args.model_dir)
    paths, labels = heldout_examples(model_dir, args.images)
    if ensure_cam(model_dir, [load_rgb(p) for p in paths]):
        print(f'added a cam output to {model_dir}/model.fp32.onnx: build its variants again')
    out = Path(args.out or Path('data/cam') / model_dir.name)
    for path in write_overlays(Classifier(model_dir, args.precision), paths, labels, out):
        print(path)
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog='python -m training', description=__doc__)
    sub = root.add_subparsers(dest='command', required=True)

    train = sub.add_parser('train', help='cross-validated training, ONNX export and model card')
    train.add_argument('--config', help='YAML file overriding the defaults (training/config.py)')
    train.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='KEY=VALUE',
        help='override one key, e.g. --set train.views=4 (repeatable)',
    )
    train.set_defaults(func=_train)

    precisions, backends = ['fp32', 'fp16', 'int8'], ['onnxruntime', 'tensorrt']
    variants = sub.add_parser('variants', help='FP16 and INT8 ONNX variants of a model folder')
    variants.add_argument('--model-dir', required=True)
    variants.add_argument(
        '--calibration-data',
        default=None,
        help="CSV of calibration images (default: the run's split.csv, training folds only)",
    )
    variants.add_argument('--calibration-images', type=int, default=1000)
    variants.add_argument(
        '--calibration-method', default='minmax', choices=['minmax', 'entropy', 'percentile']
    )
    variants.add_argument(
        '--histogram-bins',
        type=int,
        default=2048,
        help='histogram bins of entropy/percentile calibration (TensorRT: 2048; fewer is faster)',
    )
    variants.add_argument(
        '--keep-float',
        nargs='*',
        default=None,
        metavar='NAME_PART',
        help='nodes left in float in INT8 variants (default: MobileNetV2 '
        'blocks 0-1; give no value to quantize every node)',
    )
    variants.add_argument('--precision', nargs='+', default=precisions, choices=precisions)
    variants.add_argument('--backend', nargs='+', default=['onnxruntime'], choices=backends)
    variants.set_defaults(func=_variants)

    evaluate = sub.add_parser('evaluate', help='every variant on the same held-out images')
    evaluate.add_argument('--model-dir', required=True)
    evaluate.add_argument('--images', default=None, help='CSV path,label (default: heldout.csv)')
    evaluate.add_argument('--precision', nargs='+', default=precisions, choices=precisions)
    evaluate.add_argument('--backend', nargs='+', default=['onnxruntime'], choices=backends)
    evaluate.add_argument('--limit', type=int, default=None)
    evaluate.add_argument('--threads', type=int, default=None)
    evaluate.add_argument('--out', default=None, help='write the table as CSV/JSON here')
    evaluate.set_defaults(func=_evaluate)
    points = sub.add_parser(
        'operating-points',
        help='screening/balanced thresholds from CV predictions, calibration per variant engine',
    )
    points.add_argument('model_dir', help='model folder (its variants are calibrated)')
    points.add_argument(
        '--cv-run',
        nargs='+',
        required=True,
        help='training run folder(s) whose fold models scored every fold but the held-out one '
        '(same data, split and seed; e.g. a run with split.only_folds=[1,2,3,4])',
    )
    points.set_defaults(func=_operating_points)
    gate = sub.add_parser('gate', help='fit and judge the unassessable-frame gate per variant')
    gate.add_argument('model_dir', help='model folder (an embedding output is added if missing)')
    gate.add_argument(
        '--clinical',
        default=None,
        help='clinical photographs (labels.csv with image, patient_id), e.g. '
        '../shared/datasets/pad_ufes_20: a second reference domain, split by patient',
    )
    gate.add_argument(
        '--camera-bag',
        default=None,
        help="a bag the wearer's camera recorded over skin (a session's recording serves): its "
        'frames become a reference domain of their own (training/gate_camera.py)',
    )
    gate.add_argument(
        '--topic', default=None, help='image topic of --camera-bag (default: its one)'
    )
    gate.set_defaults(func=_gate)
    dcv = sub.add_parser('domain-cv', help='per-domain CV figures of a run (+ INT8 per fold)')
    dcv.add_argument('run', help='training run folder (fold_logits.npz, per-domain calibration)')
    dcv.add_argument(
        '--baseline',
        default=None,
        help='a run on the primary domain alone (same seed): paired per-fold ROC-AUC change',
    )
    dcv.add_argument(
        '--int8',
        action='store_true',
        help='export, quantize and calibrate every fold model: INT8 - FP32 recall per domain',
    )
    dcv.set_defaults(func=_domain_cv)
    rel = sub.add_parser('release', help="copy a run's model into data/models/<name>/")
    rel.add_argument('--run', required=True, help='training run folder')
    rel.add_argument('--to', required=True, help='model folder, e.g. data/models/mobilenetv2-a0.5')
    rel.add_argument('--replace', action='store_true', help='overwrite a different model')
    rel.set_defaults(func=_release)
    cam = sub.add_parser('cam', help='class activation map output + overlays of held-out images')
    cam.add_argument('--model-dir', required=True)
    cam.add_argument('--images', type=int, default=8)
    cam.add_argument('--precision', default='fp32', choices=precisions)
    cam.add_argument('--out', default=None, help='overlay folder (default: data/cam/MODEL_NAME)')
    cam.set_defaults(func=_cam)
    check = sub.add_parser(
        'check-choices', help='no image of a fold chose anything its figures use (choosing/)'
    )
    check.add_argument('folder', help='a training run or model folder (split.csv, choosing/)')
    check.set_defaults(func=_check_choices)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from skin_screening.core.bags import BagError
    from skin_screening.core.engines import EngineError

    from .data import DataError
    from .model import TrainingError

    try:
        return args.func(args)
    except (DataError, TrainingError, EngineError, BagError, OSError, KeyError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
