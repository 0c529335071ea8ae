"""The main job: variants -> evaluation bag -> replay through the nodes per precision -> table.

    uv run run.py        # embedded default: data/samples + data/models/mobilenetv2-a1.0-clinical
    uv run run.py --data ../shared/datasets/ham10000 --format ham10000 --heldout-only
    uv run run.py --data ../shared/datasets/pad_ufes_20 --format pad_ufes_20 --heldout-only
    uv run run.py --bag my_recording --precisions int8

For each precision it replays the SAME bag through the SAME nodes (launch/replay.launch.xml),
scores the recorded diagnoses against the bag's ground truth, and also scores the same engine
directly (no ROS) on the same frames. Results go to data/runs/<time>-main/ (results.json/.csv);
result.py plots them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent
DEFAULT_DATA = REPO / 'data' / 'samples'
# This checkout's code, also when a sourced colcon install (`source install/setup.bash`) has put
# an installed copy of skin_screening on PYTHONPATH ahead of it; the nodes run.py starts follow.
sys.path[:0] = [str(REPO), str(REPO / 'ros_ws' / 'src' / 'skin_screening')]
from skin_screening.core.model_card import DEFAULT_MODEL as _MODEL  # noqa: E402

DEFAULT_MODEL = REPO / _MODEL


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model-dir', type=Path, default=DEFAULT_MODEL)
    p.add_argument('--data', type=Path, default=DEFAULT_DATA, help='labelled dataset folder')
    p.add_argument('--format', default='csv', choices=['csv', 'ham10000', 'pad_ufes_20', 'folder'])
    p.add_argument(
        '--mapping',
        default=None,
        help='binary label mapping (training/mappings; default: pad_ufes_20 for that format, '
        'ham10000 otherwise)',
    )
    p.add_argument(
        '--heldout-only',
        action='store_true',
        help="keep only images of the model's held-out fold (by lesion id)",
    )
    p.add_argument('--limit', type=int, default=None, help='at most this many images')
    p.add_argument('--bag', type=Path, default=None, help='replay this bag instead of writing one')
    p.add_argument(
        '--topic', default=None, help="the bag's image topic (default: its only image topic)"
    )
    p.add_argument(
        '--labels',
        type=Path,
        default=None,
        help='CSV of labels for a bag without ground truth: y (1 = skin cancer) per index '
        '(0-based frame position) or stamp_ns',
    )
    p.add_argument('--storage', default='mcap', choices=['mcap', 'sqlite3'])
    p.add_argument(
        '--bag-distro',
        default='kilted',
        choices=['humble', 'jazzy', 'kilted'],
        help="write the evaluation bag's metadata as this distro's rosbag2 does, so that its "
        '`ros2 bag play` reads it (humble: metadata v5; on Humble also --storage sqlite3 '
        'unless ros-humble-rosbag2-storage-mcap is installed)',
    )
    p.add_argument(
        '--precisions',
        nargs='+',
        default=['fp32', 'fp16', 'int8'],
        choices=['fp32', 'fp16', 'int8'],
    )
    p.add_argument('--backend', default='onnxruntime', choices=['onnxruntime', 'tensorrt'])
    p.add_argument(
        '--operating-point',
        default=None,
        help="the card's operating point the nodes decide at (default: the card's point for "
        "the data's domain, e.g. clinical-screening for --format pad_ufes_20)",
    )
    p.add_argument(
        '--rate',
        type=float,
        default=0.0,
        help='replay rate: multiple of the recorded rate; 0 = as fast as answered',
    )
    p.add_argument('--bag-rate-hz', type=float, default=10.0, help='frame rate of a written bag')
    p.add_argument(
        '--power-source',
        default='auto',
        choices=['auto', 'ina3221', 'tegrastats', 'nvml', 'rapl'],
        help='power monitor source (auto: the first found, in that order)',
    )
    p.add_argument(
        '--sysfs-root', default='/sys', help='sysfs for the ina3221/rapl sources (test trees)'
    )
    p.add_argument('--out', type=Path, default=REPO / 'data' / 'runs')
    return p.parse_args(argv)


def ensure_variants(model_dir: Path, precisions: list[str], backend: str) -> None:
    from skin_screening.core.engines import variant_path

    from training.variants import VariantConfig, build_variants

    missing = [p for p in precisions if not variant_path(model_dir, p, backend).is_file()]
    if missing:
        print(f'building variants {missing} for {backend} ...')
        build_variants(model_dir, VariantConfig(precisions=tuple(missing), backends=(backend,)))


def energy_text(row: dict) -> str:
    joules = row['energy_j_per_inference']
    return f'{joules:.4f} J/inf' if joules else 'not measured (no power sensor found)'


def print_table(rows: list[dict]) -> None:
    print(
        f'\n{"precision":<9} {"backend":<11} {"size MB":>7} {"size×":>6} {"latency ms":>10} '
        f'{"engine ms":>9} {"fps":>6} {"F1":>6} {"F1 no-ROS":>9} {"recall":>6} {"ppv":>6} '
        f'{"unass.":>6} {"lost":>4}  energy'
    )
    for r in rows:
        energy = energy_text(r)
        print(
            f'{r["precision"]:<9} {r["backend"]:<11} {r["size_mb"]:>7.2f} '
            f'{r["size_ratio"]:>6.2f} {r["latency_median_ms"]:>10.2f} '
            f'{r["inference_median_ms"]:>9.2f} {r["throughput_fps"]:>6.1f} {r["f1"]:>6.3f} '
            f'{r["direct_f1"]:>9.3f} {r["recall"]:>6.3f} {r["ppv"]:>6.3f} '
            f'{r["unassessable"]:>6} {r["unanswered"]:>4}  {energy}'
        )
    print(
        'size× = file size / FP32 file; latency = player publish -> recorder receipt (median); '
        'F1 no-ROS = the same engine on the same frames without the nodes (must equal F1); '
        f'figures at the operating point {rows[0].get("operating_point", "")!r} on the frames '
        'the gate judged (unass. = unassessable)'
    )


def print_operational(rows: list[dict]) -> None:
    """The table of a bag without labels: what happened, not how accurate it was."""
    print(
        f'\n{"precision":<9} {"frames":>6} {"answered":>8} {"lost":>4} {"latency ms":>10} '
        f'{"engine ms":>9} {"fps":>6} {"other":>5} {"cancer":>6} {"refer":>5} {"unass.":>6} '
        f'{"alerts":>6}  energy'
    )
    for r in rows:
        print(
            f'{r["precision"]:<9} {r["frames"]:>6} {r["answered"]:>8} {r["unanswered"]:>4} '
            f'{r["latency_median_ms"]:>10.2f} {r["inference_median_ms"]:>9.2f} '
            f'{r["throughput_fps"]:>6.1f} {r["decisions_other"]:>5} '
            f'{r["decisions_skin_cancer"]:>6} {r["decisions_refer"]:>5} '
            f'{r["decisions_unassessable"]:>6} {r["alerts_raised"]:>6}  '
            f'{energy_text(r)}'
        )
    print(
        'no ground truth in the bag: diagnoses are in '
        + ', '.join(f'{r["run_dir"]}/diagnoses.csv' for r in rows)
    )


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM like Ctrl-C: the replay's cleanup stops every node


def incomplete(row: dict) -> str:
    """One line saying what a replay lost (empty when every frame is accounted for)."""
    if row['n_complete']:
        return ''
    return (
        f'{row["precision"]}: {row["n_bag_frames"]} frames in the bag, {row["n_published"]} '
        f'published, {row["n_answered"]} answered, {row["n_recorded"]} recorded: '
        f'{row["n_reasons"]}'
    )


def main(argv=None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print('\ninterrupted: every node this run started has been stopped', file=sys.stderr)
        return 130


def _main(argv=None) -> int:
    args = parse_args(argv)
    from skin_screening.bootstrap import BootstrapError, ensure_messages

    from training.replay_scoring import (
        bag_pairs,
        choose_point,
        data_domain,
        direct_scores,
        evaluation_frames,
        operating_point_table,
        scoring_truth,
    )

    try:
        ensure_messages(verbose=True)
    except BootstrapError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    from skin_screening.core.bags import BagError, inspect_bag, labels_from_csv, write_bag
    from skin_screening.core.engines import EngineError, variant_path
    from skin_screening.core.session_report import build_report
    from skin_screening.launching import ros_environment
    from skin_screening.replay import ReplayError, operational, replay, score_run

    start = time.time()
    info = truth = None
    if args.bag is not None:  # checked before anything is built or started
        try:
            info = inspect_bag(args.bag, args.topic)
            if args.labels:
                truth = labels_from_csv(args.labels, info.path, info.topic.name)
        except BagError as exc:
            print(f'error: {exc}', file=sys.stderr)
            return 2
        print(f'replaying {info.topic} of {info.path}', flush=True)
        if info.damage:
            print(f'warning: {info.damage_note}: replaying those', file=sys.stderr, flush=True)
    stamp = datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    out = args.out / f'{stamp}-main'
    out.mkdir(parents=True)
    try:
        if not (args.model_dir / 'model_card.json').is_file():
            raise FileNotFoundError(f'no model at {args.model_dir} (model_card.json missing)')
        ensure_variants(args.model_dir, args.precisions, args.backend)
        bag = args.bag
        if bag is None:
            frames = evaluation_frames(args, args.model_dir)
            bag = out / 'eval_bag'
            n = write_bag(
                bag, frames, rate_hz=args.bag_rate_hz, storage=args.storage, distro=args.bag_distro
            )
            print(f'wrote {n} held-out frames to {bag}')
            info = inspect_bag(bag)
        truth, truth_problems = scoring_truth(info, truth)
        fp32_size = variant_path(args.model_dir, 'fp32', args.backend).stat().st_size / 1e6
        point = choose_point(args)
        if point:
            print(f'operating point: {point}', flush=True)
        # Local-only DDS on a domain of this run's own (unless the caller chose one).
        domain = os.environ.get('ROS_DOMAIN_ID') or random.Random(os.getpid()).randint(1, 100)
        rows, env = [], ros_environment(domain=int(domain))
        for precision in args.precisions:
            print(f'replaying {bag.name} at {precision} on {args.backend} ...', flush=True)
            run_dir = replay(
                bag,
                args.model_dir,
                precision,
                args.backend,
                out / precision,
                rate=args.rate,
                env=env,
                params={
                    'power_monitor': {'source': args.power_source, 'sysfs_root': args.sysfs_root},
                    'inference': {'operating_point': point or ''},
                },
                topic=info.topic.name,
                compressed=info.compressed,
            )
            try:
                row = score_run(run_dir, bag, truth) if truth else operational(run_dir)
            except BagError as exc:  # nothing of this replay could be scored: say what ran
                print(f'warning: {precision}: {exc}', file=sys.stderr)
                row = operational(run_dir)
            row |= {'precision': precision, 'backend': args.backend}  # also with 0 answered
            row['size_mb'] = (
                variant_path(args.model_dir, precision, args.backend).stat().st_size / 1e6
            )
            row['size_ratio'] = row['size_mb'] / fp32_size
            if 'f1' in row:  # the same engine on the same frames of the same bag, without ROS
                pairs = bag_pairs(info, truth)
                row |= direct_scores(pairs, args.model_dir, precision, args.backend, point)
            if truth_problems:
                row['n_complete'] = False
                row['n_reasons'] = '; '.join(filter(None, [row['n_reasons'], *truth_problems]))
            row['report'] = str(build_report(run_dir))  # the session, for a clinician
            rows.append(row)
            if lost := incomplete(row):
                print(f'error: frames lost in the replay, {lost}', file=sys.stderr)
    except (BagError, EngineError, ReplayError, FileNotFoundError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    scored = all('f1' in r for r in rows)
    points = operating_point_table(rows, args.model_dir, point) if scored else []
    (out / 'results.json').write_text(
        json.dumps(
            {
                'bag': str(bag),
                'model_dir': str(args.model_dir),
                'domain': data_domain(args) if args.bag is None else None,
                'operating_point': point,
                'rows': rows,
                'operating_points': points,
            },
            indent=2,
        )
    )
    with (out / 'results.csv').open('w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (print_table if scored else print_operational)(rows)
    if points:
        from training.evaluate import print_points

        print_points(points)
    print(f'\nresults in {out} ({time.time() - start:.0f} s); plots: uv run result.py')
    print('session reports (open in a browser): ' + ', '.join(r['report'] for r in rows))
    failed = [line for r in rows if (line := incomplete(r))]
    if failed:
        print(
            f'error: {len(failed)} replay(s) lost frames; their figures are NOT complete:\n  '
            + '\n  '.join(failed),
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == '__main__':
    sys.exit(main())
