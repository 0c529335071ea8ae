"""Issue 31: passes by continuity. Chooses the continuity bound on training-fold images and
judges tracking on held-out ones (generated wearable sessions, training/wearable.py).

    uv run python benchmarks/lesion_tracking.py [--sessions 20] [--passes 12]

Choosing (images of the shipped model's training folds): the phase-correlation peak between
consecutive frames of a pass, and between the last frame of a pass and the first of the next
(skin between them unassessable). Bound: halfway between the 0.1 % quantile of the first and the
99.9 % quantile of the second. Judging (held-out lesions, other seeds): IDF1, false merges and ids
per lesion of the tracker WITHOUT re-identification (every pass its own lesion), skin frames
unassessable as the gate makes them, then assessed as if the gate missed them; and the cost per
600x450 frame. Nothing is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def sessions(rows: list[dict], n: int, passes: int, seed: int):
    """`n` generated sessions of `passes` passes over random lesions of `rows`."""
    from skin_screening.core.bags import LabelledFrame
    from skin_screening.core.preprocess import load_rgb

    from training.wearable import PassPlan, session_frames

    rng = np.random.default_rng(seed)
    groups = sorted({r['group'] for r in rows})
    by = {}
    for r in rows:
        by.setdefault(r['group'], []).append(r)
    for s in range(n):
        lesions = rng.choice(groups, passes - round(passes * PassPlan().revisits), replace=False)
        images = [
            LabelledFrame(load_rgb(REPO / r['path']), int(r['y']), r['label'], r['path'], g)
            for g in lesions
            for r in by[g]
        ]
        yield list(session_frames(images, passes, PassPlan(), seed=seed * 1000 + s))


def responses(frames) -> tuple[list[float], list[float]]:
    from skin_screening.core.lesions import ContinuityMeter, thumbnail

    meter, within, change = ContinuityMeter(), [], []
    prev, prev_pass = None, None
    for frame, k in frames:
        if k < 0:
            continue
        thumb = thumbnail(frame.rgb)
        if prev is not None:
            (within if k == prev_pass else change).append(meter(prev, thumb))
        prev, prev_pass = thumb, k
    return within, change


def judged(frames, bound: float, skin_assessed: bool) -> tuple[dict, list[float]]:
    from skin_screening.core.lesions import LesionTracker, TrackingConfig, identity_scores

    from training.wearable import SKIN

    tracker = LesionTracker(TrackingConfig(min_continuity=bound))
    truth, predicted, cost = [], [], []
    for i, (frame, _) in enumerate(frames):
        assessed = skin_assessed or frame.label != SKIN
        start = time.perf_counter()
        predicted.append(tracker.observe(int(i * 1e9 / 30), frame.rgb, 0.5, 0.0, assessed))
        cost.append(time.perf_counter() - start)
        truth.append(frame.group_id)
    return identity_scores(truth, predicted), cost


def main() -> int:
    from skin_screening.core.model_card import DEFAULT_MODEL

    from training.data import split_set

    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sessions', type=int, default=20)
    parser.add_argument('--passes', type=int, default=12)
    args = parser.parse_args()
    data, fold = split_set(REPO / DEFAULT_MODEL)
    rows = [
        {'path': str(p), 'y': y, 'label': lab, 'group': g, 'fold': f}
        for p, y, lab, g, f, d in zip(
            data.paths, data.y, data.labels, data.groups, fold, data.domains, strict=True
        )
        if d == 'dermoscopic'
    ]
    train = [r for r in rows if r['fold'] != 0]
    held = [r for r in rows if r['fold'] == 0]
    within, change = [], []
    for frames in sessions(train, args.sessions // 2, args.passes, seed=1):
        w, c = responses(frames)
        within += w
        change += c
    lo, hi = np.quantile(within, 0.001), np.quantile(change, 0.999)
    bound = float((lo + hi) / 2)
    print(
        f'choosing (training folds): {len(within)} consecutive pairs, q0.001 {lo:.3f}; '
        f'{len(change)} pass changes, q0.999 {hi:.3f} -> bound {bound:.3f}'
    )
    for skin_assessed in (False, True):
        scores, costs = [], []
        for frames in sessions(held, args.sessions, args.passes, seed=2):
            s, c = judged(frames, bound, skin_assessed)
            scores.append(s)
            costs += c
        idf1 = np.array([s['idf1'] for s in scores])
        ids_per_lesion = sum(s['ids'] for s in scores) / sum(s['lesions'] for s in scores)
        print(
            f'held-out, skin {"assessed" if skin_assessed else "unassessable"}: '
            f'IDF1 median {np.median(idf1):.3f} (min {idf1.min():.3f}, max {idf1.max():.3f}), '
            f'false merges {sum(s["false_merges"] for s in scores)}, '
            f'ids per lesion {ids_per_lesion:.2f}, '
            f'cost per frame median {1000 * np.median(costs):.2f} ms '
            f'(p95 {1000 * np.quantile(costs, 0.95):.2f})'
        )
    return 0


if __name__ == '__main__':
    sys.exit(main())
