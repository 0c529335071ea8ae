"""Issue 31 groundwork: can local features re-identify a lesion across HAM10000's images of it?

    uv run python benchmarks/reid_local_features.py [--detector orb|sift] [--lesions 150]

Held-out lesions (the shipped model's held-out fold) with 2+ images: every image queries all
the others; the candidate with the most RANSAC-homography inliers (ratio-tested matches) is its
top-1. Prints top-1 retrieval and, per inlier threshold, the share of different-lesion pairs
that would merge and of same-lesion pairs that would be kept. Nothing is written.
Measured (150 lesions, 346 images, 345 candidates each): ORB 1000 at 300x225 top-1 0.540;
SIFT 800 at 450x338 0.454 - HAM10000's revisits are other acquisitions (zoom, light), not
the near-duplicate views a tracker sees between frames.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def lesions(model_dir: Path, n: int, seed: int = 0) -> dict[str, list[Path]]:
    """Up to `n` held-out lesions with 2+ images -> their image paths."""
    with (model_dir / 'heldout.csv').open() as f:
        rows = [r for r in csv.DictReader(f) if r['domain'] == 'dermoscopic']
    by = defaultdict(list)
    for r in rows:
        by[r['group']].append(REPO / r['path'])
    multi = sorted(k for k, v in by.items() if len(v) >= 2)
    pick = np.random.default_rng(seed).permutation(multi)[:n]
    return {k: by[k] for k in pick}


def main() -> int:
    import cv2
    from skin_screening.core.model_card import DEFAULT_MODEL

    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--detector', choices=['orb', 'sift'], default='orb')
    parser.add_argument('--lesions', type=int, default=150)
    args = parser.parse_args()
    orb = args.detector == 'orb'
    detector = cv2.ORB_create(1000) if orb else cv2.SIFT_create(800)
    size = (300, 225) if orb else (450, 338)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING if orb else cv2.NORM_L2)
    groups = lesions(REPO / DEFAULT_MODEL, args.lesions)
    images = [(k, p) for k, paths in groups.items() for p in paths]
    feats = []
    for _, path in images:
        grey = cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), size)
        kp, des = detector.detectAndCompute(grey, None)
        feats.append((np.float32([k.pt for k in kp]), des))

    def inliers(a: int, b: int) -> int:
        (pa, da), (pb, db) = feats[a], feats[b]
        if da is None or db is None or len(da) < 8 or len(db) < 8:
            return 0
        pairs = matcher.knnMatch(da, db, k=2)
        good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
        if len(good) < 8:
            return 0
        src, dst = pa[[g.queryIdx for g in good]], pb[[g.trainIdx for g in good]]
        _, mask = cv2.findHomography(src, dst, cv2.RANSAC, 5.0)
        return int(mask.sum()) if mask is not None else 0

    hits, same, other = 0, [], []
    for q, (lesion, _) in enumerate(images):
        scores = {c: inliers(q, c) for c in range(len(images)) if c != q}
        hits += images[max(scores, key=scores.get)][0] == lesion
        for c, s in scores.items():
            (same if images[c][0] == lesion else other).append(s)
    n = len(images)
    print(f'{args.detector}: top-1 {hits / n:.3f} over {n} images of {len(groups)} lesions')
    same, other = np.array(same), np.array(other)
    for threshold in (10, 15, 20, 30):
        merged, kept = np.mean(other >= threshold), np.mean(same >= threshold)
        print(f'  >= {threshold} inliers: merged {merged:.4f}, same lesion kept {kept:.3f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
