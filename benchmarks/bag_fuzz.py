"""Fuzz every bag reader: N seeded, damaged copies of rosbags-written dwell bags (mcap with the
CRCs the project writes, and sqlite3) through inspect_bag, the player's frame reader and
run.py (real nodes, --precisions int8), one at a time.

    uv run python benchmarks/bag_fuzz.py --n 200            # the issue's 200 bags
    uv run python benchmarks/bag_fuzz.py --n 20 --no-run-py # readers only (seconds)

Prints the table damage kind -> outcome and, per run.py, the exit code, seconds and peak memory
of the largest process; checks that no run printed a traceback or exited other than 0/2/3,
and that every mcap frame the player would publish is byte-identical to the original frame of
that stamp. Exit code 1 when any check fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / 'ros_ws' / 'src' / 'skin_screening')]

from skin_screening.core.bags import BagError, frames_of, inspect_bag  # noqa: E402

from tests.bag_mutations import KINDS, mutate  # noqa: E402

MEASURE = (
    'import resource, subprocess, sys, time; t = time.monotonic(); '
    'rc = subprocess.run(sys.argv[1:]).returncode; '
    'print("FUZZ", rc, time.monotonic() - t, '
    'resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)'
)


def originals(folder: Path, frames: int) -> dict[str, Path]:
    """A dwell bag of real sample photographs per storage (30 Hz, `frames` frames)."""
    from skin_screening.core.bags import LabelledFrame, write_bag
    from skin_screening.core.dwell import dwell_frames
    from skin_screening.core.preprocess import load_rgb

    samples = REPO / 'data' / 'samples'
    rows = list(csv.DictReader((samples / 'labels.csv').open()))[:6]
    images = [
        LabelledFrame(
            load_rgb(samples / r['path']),
            int(r['label'] == 'mel'),
            r['label'],
            r['path'],
            r['path'],
        )
        for r in rows
    ]
    bags = {}
    for storage in ('mcap', 'sqlite3'):
        bags[storage] = folder / f'original-{storage}'
        each = max(1, frames // len(images))
        write_bag(bags[storage], dwell_frames(images, each), rate_hz=30.0, storage=storage)
    return bags


def read_outcome(bag: Path, reference: dict[int, bytes]) -> dict:
    """inspect_bag + the player's frames: refused, intact, or damaged (frames read/expected),
    and whether every frame read is the original's byte for byte."""
    try:
        info = inspect_bag(bag)
        frames = {f.stamp_ns: f.raw for f in frames_of(info)}
    except BagError as exc:
        return {'outcome': 'refused', 'why': str(exc)[:160], 'identical': True, 'read': 0}
    identical = all(reference.get(s) == raw for s, raw in frames.items())
    outcome = 'damaged' if info.damage else 'intact'
    return {
        'outcome': outcome,
        'why': info.damage[:160],
        'identical': identical,
        'read': len(frames),
        'expected': info.expected,
    }


def run_py(bag: Path, out: Path, env: dict) -> dict:
    cmd = [sys.executable, str(REPO / 'run.py'), '--bag', str(bag), '--precisions', 'int8']
    proc = subprocess.run(
        [sys.executable, '-c', MEASURE, *cmd, '--out', str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next(x for x in proc.stderr.splitlines() if x.startswith('FUZZ '))
    rc, seconds, kb = line.split()[1:]
    return {
        'exit': int(rc),
        'seconds': float(seconds),
        'peak_mb': int(kb) / 1024,
        'traceback': 'Traceback' in proc.stderr or 'Traceback' in proc.stdout,
        'stderr_tail': proc.stderr.replace(line, '').strip()[-300:],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=200, help='mutated bags (half mcap, half sqlite3)')
    p.add_argument('--frames', type=int, default=60, help='frames of each original bag')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--no-run-py', action='store_true', help='readers only')
    p.add_argument('--json', type=Path, default=None, help='write every case here')
    args = p.parse_args()
    from skin_screening.launching import ros_environment

    domain = os.environ.get('ROS_DOMAIN_ID') or random.Random(os.getpid()).randint(1, 100)
    env = dict(os.environ) | ros_environment(domain=str(domain))
    cases, failures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bags = originals(root, args.frames)
        reference = {
            s: {f.stamp_ns: f.raw for f in frames_of(inspect_bag(b))} for s, b in bags.items()
        }
        for i in range(args.n):
            storage = ('mcap', 'sqlite3')[i % 2]
            kind = KINDS[(i // 2) % len(KINDS)]
            copy = root / f'case{i}'
            what = mutate(bags[storage], copy, kind, args.seed * 100_000 + i)
            start = time.monotonic()
            case = {'i': i, 'storage': storage, 'kind': kind, 'what': what}
            case |= read_outcome(copy, reference[storage])
            case['read_seconds'] = time.monotonic() - start
            if not args.no_run_py:
                case |= run_py(copy, root / f'out{i}', env)
            cases.append(case)
            bad = _failed(case)
            if bad:
                failures.append(f'case {i} ({storage}, {what}): {bad}')
            print(_line(case), flush=True)
            subprocess.run(['rm', '-rf', str(copy), str(root / f'out{i}')], check=False)
    _table(cases, not args.no_run_py)
    if args.json:
        args.json.write_text(json.dumps(cases, indent=1))
    print(f'\n{len(cases)} mutated bags, {len(failures)} failing checks')
    for line in failures:
        print('  ' + line)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f'this script peak memory: {own:.0f} MB')
    return 1 if failures else 0


def _failed(case: dict) -> str:
    problems = []
    if case['storage'] == 'mcap' and not case['identical']:
        problems.append('a frame read differs from the original')
    if 'exit' in case:
        if case['exit'] not in (0, 2, 3):
            problems.append(f'exit {case["exit"]}')
        if case['traceback']:
            problems.append('traceback')
        if case['seconds'] > 60 or case['peak_mb'] > 1024:
            problems.append(f'{case["seconds"]:.0f} s, {case["peak_mb"]:.0f} MB')
        if case['outcome'] == 'damaged' and case['exit'] == 0:
            problems.append('damage found but run.py exited 0')
    return ', '.join(problems)


def _line(case: dict) -> str:
    run = (
        f' | run.py exit {case["exit"]} {case["seconds"]:.1f} s {case["peak_mb"]:.0f} MB'
        if 'exit' in case
        else ''
    )
    return (
        f'{case["i"]:>3} {case["storage"]:<7} {case["what"][:44]:<44} {case["outcome"]:<8} '
        f'read {case["read"]:>3}{run}'
    )


def _table(cases: list[dict], with_run: bool) -> None:
    groups = defaultdict(list)
    for c in cases:
        groups[(c['storage'], c['kind'])].append(c)
    print(f'\n{"storage":<8} {"damage":<19} {"n":>3}  {"outcome (inspect_bag)":<37} run.py exits')
    for (storage, kind), group in sorted(groups.items()):
        outcomes = Counter(c['outcome'] for c in group)
        exits = Counter(c['exit'] for c in group) if with_run else {}
        shown = ', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))
        codes = ', '.join(f'{k}: {v}' for k, v in sorted(exits.items()))
        print(f'{storage:<8} {kind:<19} {len(group):>3}  {shown:<37} {codes}')
    if with_run:
        seconds = sorted(c['seconds'] for c in cases)
        memory = sorted(c['peak_mb'] for c in cases)
        print(
            f'run.py: median {seconds[len(seconds) // 2]:.1f} s, max {seconds[-1]:.1f} s; '
            f'peak memory of the largest process median {memory[len(memory) // 2]:.0f} MB, '
            f'max {memory[-1]:.0f} MB; tracebacks {sum(c["traceback"] for c in cases)}'
        )


if __name__ == '__main__':
    sys.exit(main())
