"""Issue 17 benchmark: consecutive replays of the held-out bag at each precision under CPU load,
every frame accounted for (bag -> published -> answered -> recorded) each time.

    uv run python benchmarks/replay_soak.py [--rounds 20] [--load 2] [--limit N]

Writes the held-out fold of ../shared HAM10000 as one evaluation bag (as run.py does), starts
--load busy-loop processes (the "other CPU-heavy job"), then replays the bag --rounds times per
precision through launch/replay.launch.xml (the same nodes as run.py) and prints one line per
replay and a summary. Exit code 1 if any replay lost a frame (with the reason).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from skin_screening.bootstrap import ensure_messages  # noqa: E402
from skin_screening.launching import ros_environment  # noqa: E402

import run as main_job  # noqa: E402

HAM = REPO.parent / 'shared' / 'datasets' / 'ham10000'


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--rounds', type=int, default=20)
    p.add_argument('--precisions', nargs='+', default=['fp32', 'fp16', 'int8'])
    p.add_argument('--load', type=int, default=2, help='busy-loop processes meanwhile')
    p.add_argument('--limit', type=int, default=None, help='at most this many held-out frames')
    p.add_argument('--out', type=Path, default=REPO / 'data' / 'benchmarks' / 'replay_soak')
    args = p.parse_args()
    ensure_messages()
    from skin_screening.core.bags import write_bag
    from skin_screening.replay import account, replay

    work = Path(f'/tmp/replay_soak-{os.getpid()}')
    job_args = ['--data', str(HAM), '--format', 'ham10000', '--heldout-only']
    job_args += ['--limit', str(args.limit)] if args.limit else []
    job = main_job.parse_args(job_args)
    frames = main_job.evaluation_frames(job, main_job.DEFAULT_MODEL)
    bag = work / 'eval_bag'
    write_bag(bag, frames)
    env = ros_environment(domain=random.randint(201, 232))
    hogs = [subprocess.Popen([sys.executable, '-c', 'while True: pass']) for _ in range(args.load)]
    rows = []
    try:
        for round_ in range(args.rounds):
            for precision in args.precisions:
                start = time.monotonic()
                run_dir = replay(
                    bag,
                    main_job.DEFAULT_MODEL,
                    precision,
                    'onnxruntime',
                    work / f'{round_:02d}-{precision}',
                    env=env,
                )
                counts = account(run_dir) | {
                    'round': round_,
                    'precision': precision,
                    'seconds': round(time.monotonic() - start, 1),
                }
                rows.append(counts)
                print(
                    f'round {round_:2d} {precision}: {counts["bag_frames"]} in bag, '
                    f'{counts["published"]} published, {counts["answered"]} answered, '
                    f'{counts["recorded"]} recorded in {counts["seconds"]:.0f} s'
                    + (f'  LOST: {counts["reasons"]}' if not counts['complete'] else ''),
                    flush=True,
                )
    finally:
        for hog in hogs:
            hog.kill()
    failed = [r for r in rows if not r['complete']]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'replay_soak.json').write_text(
        json.dumps({'load_processes': args.load, 'cpus': os.cpu_count(), 'rows': rows}, indent=2)
    )
    print(
        f'\n{len(rows)} replays of {len(frames)} frames under {args.load} busy process(es): '
        f'{len(rows) - len(failed)} complete (recorded == published == frames in the bag), '
        f'{len(failed)} lost frames; {args.out / "replay_soak.json"}'
    )
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
