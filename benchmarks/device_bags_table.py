"""The table of bag kinds a device records x what `run.py --bag` does with each.

Every bag is written here with rosbags (not the project's writer) from the embedded sample
images, as tests/test_device_bags.py writes them; each is replayed at fp32 and the exit code,
frames answered/lost and the message are printed as a Markdown table (also written to
data/benchmarks/device_bags/table.md).

    uv run python benchmarks/device_bags_table.py
"""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from tests.test_device_bags import as_humble, compressed, image, truncate, write  # noqa: E402


def sample_rgbs(n: int = 6):
    rows = list(csv.DictReader((REPO / 'data/samples/labels.csv').open()))[:n]
    return [cv2.imread(str(REPO / 'data/samples' / r['path']))[:, :, ::-1] for r in rows]


def kinds(rgbs, root: Path) -> dict[str, tuple[Path, list[str]]]:
    big = [cv2.resize(f, (640, 480)) for f in rgbs]
    raw = {'/camera/image': [image(f, 'rgb8') for f in rgbs]}
    out = {
        'rgb8, mcap, Kilted metadata (v9)': (write(root / 'a', raw), []),
        'bgr8, sqlite3, Jazzy-era v8': (
            write(root / 'b', {'/c': [image(f, 'bgr8') for f in rgbs]}, 'sqlite3', 8),
            [],
        ),
        'rgb8, mcap, Humble metadata (v5)': (as_humble(write(root / 'c', raw, version=8)), []),
        'mono8': (write(root / 'd', {'/c': [image(f, 'mono8') for f in rgbs]}), []),
        'jpeg (CompressedImage)': (
            write(root / 'e', {'/c': [compressed(f, 'jpeg') for f in rgbs]}),
            [],
        ),
        'png (CompressedImage), sqlite3': (
            write(root / 'f', {'/c': [compressed(f, 'png') for f in rgbs]}, 'sqlite3'),
            [],
        ),
        'depth 16UC1 + rgb8, no --topic': (
            write(
                root / 'g',
                {
                    '/depth': [image(f, '16UC1') for f in rgbs],
                    '/color': [image(f, 'rgb8') for f in rgbs],
                },
            ),
            [],
        ),
        'depth 16UC1 + rgb8, --topic /color': (root / 'g', ['--topic', '/color']),
        'mcap cut at 55 % (640x480)': (
            truncate(write(root / 'h', {'/c': [image(f, 'rgb8') for f in big]}), 0.55),
            [],
        ),
        'mcap cut at 10 %': (truncate(write(root / 'i', raw), 0.10), []),
        'sqlite3 cut at 55 % (640x480)': (
            write(root / 'l', {'/c': [image(f, 'rgb8') for f in big]}, 'sqlite3'),
            [],
        ),
        'metadata.yaml deleted': (write(root / 'j', raw, 'sqlite3'), []),
        'not a bag': (root / 'k', []),
    }
    (root / 'j' / 'metadata.yaml').unlink()
    db3 = next((root / 'l').glob('*.db3'))
    db3.write_bytes(db3.read_bytes()[: db3.stat().st_size * 55 // 100])
    (root / 'k').mkdir()
    (root / 'k' / 'notes.txt').write_text('not a bag')
    return out


def run(bag: Path, extra: list[str], out: Path, env: dict) -> tuple[int, str, str, float]:
    start = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / 'run.py'),
            '--bag',
            str(bag),
            '--precisions',
            'fp32',
            '--out',
            str(out),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.monotonic() - start
    row = ''
    if 'energy\n' in done.stdout:
        cells = done.stdout.split('energy\n', 1)[1].splitlines()[0].split()
        row = f'{cells[2]} answered, {cells[3]} lost of {cells[1]}'
    lines = [x for x in done.stderr.splitlines() if x.startswith(('error', 'warning', 'fp32:'))]
    said = [x for x in done.stdout.splitlines() if x.startswith(('no ground truth', 'replaying'))]
    message = ' / '.join(lines) or said[-1]
    return done.returncode, row, message, seconds


def main() -> int:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    env.setdefault('ROS_DOMAIN_ID', str(random.randint(101, 200)))
    lines = ['| bag | exit | frames | seconds | message |', '|---|---|---|---|---|']
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, (bag, extra) in kinds(sample_rgbs(), root).items():
            code, row, message, seconds = run(bag, extra, root / 'out', env)
            message = message.replace(tmp, '<tmp>').replace('|', '/')
            lines.append(f'| {name} | {code} | {row or "-"} | {seconds:.1f} | {message[:220]} |')
            print(lines[-1], flush=True)
    out = REPO / 'data' / 'benchmarks' / 'device_bags'
    out.mkdir(parents=True, exist_ok=True)
    (out / 'table.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
