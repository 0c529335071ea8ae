"""The findings node (issue: findings and the session report), measured with the real nodes.

    uv run python benchmarks/findings.py sample    # data/sessions/sample: report + screenshot
    uv run python benchmarks/findings.py soak      # 10,000 frames, an alert every 1.3 s: what
                                                   # the session writes never exceeds its budget
    uv run python benchmarks/findings.py store     # the store + recorder alone: cost per frame
    uv run python benchmarks/findings.py report    # report.html of a 100-finding session
    uv run python benchmarks/findings.py latency   # the inference path with and without it

Bags are dwell bags (core/dwell.py) of the embedded sample images: the camera stays 20 frames on
each lesion, alternating the model's most and least suspicious ones, so an alert rises and
clears every 40 frames. Figures print as medians/ratios and go to data/benchmarks/findings/.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
from skin_screening.core.model_card import DEFAULT_MODEL  # noqa: E402
from skin_screening.core.sessions import disk_bytes  # noqa: E402

MODEL = REPO / DEFAULT_MODEL
OUT = REPO / 'data' / 'benchmarks' / 'findings'


def lesions(n: int = 4):
    """n sample images, alternating the least and most suspicious by the shipped model."""
    from skin_screening.core.bags import LabelledFrame
    from skin_screening.core.classifier import Classifier
    from skin_screening.core.preprocess import load_rgb

    rows = list(csv.DictReader((REPO / 'data/samples/labels.csv').open()))
    frames = [load_rgb(REPO / 'data/samples' / r['path']) for r in rows]
    clf = Classifier(MODEL, 'fp32', 'onnxruntime')
    p = np.concatenate([clf.classify(frames[i : i + 16])[0].probability for i in range(0, 64, 16)])
    clf.close()
    order = np.argsort(p)
    pick = [i for pair in zip(order[: n // 2], order[::-1][: n // 2]) for i in pair]
    cancers = ('mel', 'bcc', 'akiec')
    return [
        LabelledFrame(
            frames[i],
            int(rows[i]['label'] in cancers),
            rows[i]['label'],
            rows[i]['image_id'],
            rows[i]['group'],
        )
        for i in pick
    ]


def dwell_bag(path: Path, frames: int, side: int | None = None) -> Path:
    """`frames` frames, 20 per lesion; `side`: frames resized to side x side (a long soak)."""
    import cv2
    from skin_screening.core.bags import write_bag
    from skin_screening.core.dwell import dwell_frames

    base = lesions()
    if side:
        base = [dataclasses.replace(f, rgb=cv2.resize(f.rgb, (side, side))) for f in base]
    repeats = -(-frames // (20 * len(base)))
    write_bag(path, itertools.islice(dwell_frames(base * repeats, 20), frames), rate_hz=30.0)
    return path


def env() -> dict:
    from skin_screening.launching import ros_environment

    return ros_environment(
        os.environ, domain=os.environ.get('ROS_DOMAIN_ID') or random.randint(101, 200)
    )


def sample() -> None:
    from skin_screening.core.session_report import build_report
    from skin_screening.replay import account, replay

    from tests.browser import chromium, screenshot

    target = REPO / 'data' / 'sessions' / 'sample'
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        bag = dwell_bag(Path(tmp) / 'bag', 160)
        run = replay(
            bag,
            MODEL,
            'int8',
            'onnxruntime',
            target,
            rate=1.0,
            env=env(),
            params={'findings': {'jpeg_quality': 80}, 'inference': {'publish_cam': True}},
        )
    counts = account(run)
    assert counts['complete'], counts['reasons']
    shutil.rmtree(target / 'logs', ignore_errors=True)
    report = build_report(run, out=target / 'report.html')
    print(report)
    if chromium():
        png = screenshot(report, REPO / 'data' / 'sessions' / 'sample_report.png', 1000, 1800)
        print(f'{REPO / "data/sessions/sample_report.png"} ({png.shape[1]}x{png.shape[0]})')


def session_bytes(out: Path) -> int:
    """Everything the nodes write for their sessions under `out` (session folders: CSVs and
    evidence; the replay harness's logs aside)."""
    return sum(disk_bytes(m.parent.rglob('*')) for m in out.glob('*/session.json'))


def soak(frames: int, bound_mb: float, rate: float) -> dict:
    """The real nodes, one budget of `bound_mb` over what the session writes (recorder CSVs
    and evidence), its size sampled every second."""
    from skin_screening.replay import operational, replay

    with tempfile.TemporaryDirectory() as tmp:
        bag = dwell_bag(Path(tmp) / 'bag', frames, side=224)
        out = Path(tmp) / 'out'
        samples, stop = [], threading.Event()

        def watch():
            while not stop.wait(1.0):
                samples.append(session_bytes(out) if out.is_dir() else 0)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        start = time.monotonic()
        budget = {'max_disk_mb': bound_mb}
        run = replay(
            bag,
            MODEL,
            'int8',
            'onnxruntime',
            out,
            rate=rate,
            env=env(),
            params={'findings': budget, 'recorder': budget},
            timeout_s=3600,
        )
        stop.set()
        watcher.join()
        row = operational(run)
        findings = run / 'findings'
        episodes = [json.loads(p.read_text()) for p in findings.glob('*/episode.json')]
        records = [json.loads(p.read_text()) for p in findings.glob('*/[0-9]*.json')]
        result = {
            'rate': 'as fast as answered' if rate == 0 else f'{rate} x recorded (30 Hz)',
            'frames': row['frames'],
            'answered': row['answered'],
            'alerts_raised': row['alerts_raised'],
            'findings': len(episodes),
            'seconds': round(time.monotonic() - start, 1),
            'bound_mb': bound_mb,
            'samples': len(samples),
            'peak_mb': round(max(samples, default=0) / 1e6, 3),
            'final_mb': round(session_bytes(out) / 1e6, 3),
            'csv_mb': round(sum(f.stat().st_size for f in run.glob('*.csv')) / 1e6, 3),
            'images_dropped': sum(e['dropped'] for e in episodes),
            'kept_frames': sum(len(e['kept']) for e in episodes),
            'kept_frames_received_by_findings': sum(r['has_frame'] for r in records),
        }
    print(json.dumps(result, indent=2))
    assert result['peak_mb'] <= bound_mb and result['final_mb'] <= bound_mb, 'budget exceeded'
    return result


def store_cost(frames: int, bound_mb: float) -> dict:
    """The evidence store and the recorder in one process at the soak's pace (an alert every
    39 frames = 1.3 s at 30 Hz, the store's 1 s tick every 30 frames), every frame timed:
    the per-frame cost must not grow as the budget saturates (first vs last 1,000 frames)."""
    import cv2
    from skin_screening.core.findings import FindingsStore
    from skin_screening.core.recording import SessionRecorder

    images = [cv2.imencode('.jpg', f.rgb[:, :, ::-1])[1].tobytes() for f in lesions()]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        session = root / 'session'
        session.mkdir()
        rec = SessionRecorder(session, flush_every=1)
        store = FindingsStore(session / 'findings', int(bound_mb * 1e6), 3, root, session)
        cost, peak, episodes, saturated = [], 0, 0, None
        f32 = lambda x: float(np.float32(x))  # noqa: E731 - as a Diagnosis carries it
        row = {  # a diagnoses.csv row as the recorder writes one (benchmark values)
            'frame_id': 'wearable_camera',
            'received_ns': 1796 * 10**15,
            'decision': 0,
            'label': 'other',
            'threshold': f32(0.3351),
            'operating_point': 'clinical-screening',
            'entropy': f32(0.4213),
            'epistemic': f32(0.0123),
            'ambiguity': f32(0.2871),
            'referral_score': 'ambiguity',
            'referral_threshold': f32(0.9123),
            'precision': 'int8',
            'backend': 'onnxruntime',
            'model_id': 'mobilenetv2-a1.0-clinical@4986b410',
            'inference_ms': f32(9.8731),
            'latency_ms': f32(31.2571),
        }
        for i in range(frames):
            t0 = time.perf_counter()
            p = 0.5 + 0.5 * ((i * 7919) % 101) / 101
            rec.diagnosis(row | {'stamp_ns': 1700 * 10**15 + i, 'probability': p})
            if i % 39 == 0:
                store.start(i, 1, 'raised')
                episodes += 1
            store.offer(i, p, {'probability': p}, images[i % len(images)])
            if i % 39 == 20:
                store.end(i)
            if i % 30 == 0:
                store.tick()
            cost.append(time.perf_counter() - t0)
            if i % 30 == 29:  # a second of the camera's: what is on disk
                peak = max(peak, disk_bytes(root.rglob('*')))
                saturated = saturated or (i if store.bytes > 0.9 * store.max_bytes else None)
        rec.close()
        summaries = len(list(root.glob('session/findings/*/episode.json')))
        first, last = np.median(cost[:1000]) * 1e6, np.median(cost[-1000:]) * 1e6
        result = {
            'frames': frames,
            'bound_mb': bound_mb,
            'peak_mb': round(peak / 1e6, 3),
            'csv_mb': round(rec.bytes() / 1e6, 3),
            'findings': episodes,
            'summaries_on_disk': summaries,
            'refused_writes': store.refused,
            'budget_90pc_full_at_frame': saturated,
            'frame_cost_us_first_1000': round(float(first), 1),
            'frame_cost_us_1000_once_full': round(
                float(np.median(cost[saturated : saturated + 1000]) * 1e6), 1
            )
            if saturated is not None
            else None,
            'frame_cost_us_last_1000': round(float(last), 1),
            'ratio_last/first': round(float(last / first), 2),
        }
    print(json.dumps(result, indent=2))
    assert peak <= bound_mb * 1e6 and summaries == episodes
    return result


def report_size(lesions_n: int = 100) -> dict:
    """report.html of a session with `lesions_n` findings of 3 camera-sized frames (600x450,
    JPEG q90, with CAM overlays), built as result.py --session builds it."""
    import cv2
    from skin_screening.core.findings import FindingsStore
    from skin_screening.core.recording import SessionRecorder
    from skin_screening.core.session_report import build_report

    frames = [cv2.resize(f.rgb, (600, 450)) for f in lesions()]
    quality = [cv2.IMWRITE_JPEG_QUALITY, 90]  # the findings node's default
    jpegs = [cv2.imencode('.jpg', f[:, :, ::-1], quality)[1] for f in frames]
    with tempfile.TemporaryDirectory() as tmp:
        session = Path(tmp)
        rec = SessionRecorder(session)
        store = FindingsStore(session / 'findings', 10**9, 3)
        stamp = 1700 * 10**15
        for lesion in range(lesions_n):
            for i in range(40):  # 20 frames on a suspicious lesion, 20 on skin
                stamp += 33_333_333
                p = 0.9 - i / 100 if i < 20 else 0.05
                row = {'stamp_ns': stamp, 'received_ns': stamp, 'probability': p}
                rec.diagnosis(row | {'decision': int(p > 0.5), 'label': 'x', 'threshold': 0.5})
                if i == 3:
                    store.start(stamp, 1, 'raised')
                if 3 <= i < 20:
                    jpeg = jpegs[lesion % len(jpegs)].tobytes()
                    store.offer(stamp, p, {'probability': p}, jpeg, jpeg)
                if i == 20:
                    store.end(stamp)
        rec.close()
        evidence = sum(f.stat().st_size for f in (session / 'findings').rglob('*.jpg'))
        report = build_report(session)
        result = {
            'findings': lesions_n,
            'evidence_images_mb': round(evidence / 1e6, 2),
            'report_mb': round(report.stat().st_size / 1e6, 2),
            'report_kb_per_finding': round(report.stat().st_size / 1e3 / lesions_n, 1),
        }
    print(json.dumps(result, indent=2))
    return result


def latency(frames: int) -> dict:
    """Replay latency (player publish -> recorder receipt, through the inference node) at the
    camera's 30 Hz, with and without the findings node, alternating 3 times each."""
    from skin_screening.replay import operational, replay

    rows = {'with': [], 'without': []}
    with tempfile.TemporaryDirectory() as tmp:
        bag = dwell_bag(Path(tmp) / 'bag', frames)
        for i in range(3):
            for mode in ('with', 'without'):
                run = replay(
                    bag,
                    MODEL,
                    'int8',
                    'onnxruntime',
                    Path(tmp) / f'{mode}{i}',
                    rate=1.0,
                    env=env(),
                    without=('findings',) if mode == 'without' else (),
                )
                rows[mode].append(operational(run))
    result = {
        mode: {
            'latency_median_ms': round(float(np.median([r['latency_median_ms'] for r in rs])), 2),
            'latency_p99_ms': round(float(np.median([r['latency_p99_ms'] for r in rs])), 2),
            'inference_median_ms': round(
                float(np.median([r['inference_median_ms'] for r in rs])), 2
            ),
            'answered': [r['answered'] for r in rs],
        }
        for mode, rs in rows.items()
    }
    result['median_ratio_with/without'] = round(
        result['with']['latency_median_ms'] / result['without']['latency_median_ms'], 3
    )
    result['p99_ratio_with/without'] = round(
        result['with']['latency_p99_ms'] / result['without']['latency_p99_ms'], 3
    )
    print(json.dumps(result, indent=2))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('what', choices=['sample', 'soak', 'store', 'report', 'latency'])
    parser.add_argument('--frames', type=int, default=None)
    parser.add_argument('--bound-mb', type=float, default=2.0)
    parser.add_argument(
        '--rate',
        type=float,
        default=1.0,
        help="soak: 1 = the camera's 30 Hz, 0 = as fast as answered",
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.what == 'sample':
        sample()
    elif args.what == 'store':
        result = store_cost(args.frames or 10_000, args.bound_mb)
        (OUT / 'store.json').write_text(json.dumps(result, indent=2))
    elif args.what == 'report':
        result = report_size()
        (OUT / 'report_size.json').write_text(json.dumps(result, indent=2))
    elif args.what == 'soak':
        result = soak(args.frames or 10_000, args.bound_mb, args.rate)
        name = 'soak.json' if args.rate else 'soak_max_rate.json'
        (OUT / name).write_text(json.dumps(result, indent=2))
    else:
        result = latency(args.frames or 600)
        (OUT / 'latency.json').write_text(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
