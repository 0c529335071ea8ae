"""Fit the gate to the wearer's own camera: its frames become a reference domain of their own.

    python -m training gate data/models/mobilenetv2-a1.0-clinical --camera-bag BAG [--topic T]

BAG: unlabelled frames the device recorded (a few minutes over skin; a session's recording
serves). Frames that fail the gate's quality limits (dark, blurred, clipped, grey) are not
learnt. The rest are cut into blocks of BLOCK_S seconds of recording time, dealt in turn to
fitting (2 of 4 blocks), the bound (1 of 4) and judging (1 of 4): neighbouring frames are
nearly the same picture, so the bound is set, and the rates judged, on moments the reference
never saw. Per variant file, through its own engine: a 'camera' reference (mean and shrunk
covariance of the fitting frames' embeddings) whose bound is the 99th percentile of the bound
frames' distances, capped below the nearest non-lesion or spoiled probe frame the gate flags
(synthetic noise is close to a noisy camera's frames: it must stay flagged); an earlier 'camera'
reference is replaced, the other domains are kept. The
card records the bag's sha256, the frames used and the rates before and after, on the judged
frames and on the probe sets (non-lesion photographs, synthetic and spoiled frames), which must
stay flagged (judged on another random draw of the probe sets than the one that capped). The
nodes read gate.json as before: no code change, no new parameter.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from skin_screening.core.gate import GATE_FILE, Gate, Reference, load_gate
from skin_screening.core.model_card import ModelCard, sha256_file

from .data import DataError
from .gate import BOUND_QUANTILE, embeddings, ensure_embedding, judged, probe_sets
from .variants import open_variant

CAMERA_DOMAIN = 'camera'
BLOCK_S = 2.0
ROLES = ('fit', 'fit', 'bound', 'judged')  # block i plays ROLES[i % 4]
MIN_FRAMES = {'fit': 200, 'bound': 100, 'judged': 50}  # a stable 99th percentile: >= 100
CAP_MARGIN = 0.95  # the camera bound stays below 95 % of the nearest known non-lesion frame
LESION_PROBES = ('full-resolution dermoscopy',)  # lesions: they never cap the bound
CAP_SEED, JUDGE_SEED = 0, 1  # probe draws that cap the bound / that judge the result


def bag_crops(bag: str | Path, topic: str | None, card: ModelCard):
    """(crops, recording time in seconds from the first frame, chosen topic name, frames that
    do not decode) of a bag's image topic."""
    from skin_screening.core.bags import decoded_frames, inspect_bag
    from skin_screening.core.preprocess import resize

    info, broken = inspect_bag(bag, topic), []
    frames = list(decoded_frames(info, skipped=broken))
    if not frames:
        raise DataError(f'{bag}: no frame of {info.topic.name} decodes ({len(broken)} tried)')
    times = np.array([stamp for stamp, _ in frames], np.int64)
    crops = np.stack([resize(rgb, card.preprocessing) for _, rgb in frames])
    return crops, (times - times.min()) / 1e9, info.topic.name, len(broken)


def roles(seconds: np.ndarray, usable: np.ndarray) -> dict[str, np.ndarray]:
    """Index of the usable frames in each role, by block of recording time."""
    block = np.floor(seconds / BLOCK_S).astype(np.int64)
    role = np.array([ROLES[b % len(ROLES)] for b in block])
    out = {name: np.nonzero(usable & (role == name))[0] for name in MIN_FRAMES}
    short = {k: len(v) for k, v in out.items() if len(v) < MIN_FRAMES[k]}
    if short:
        raise DataError(
            f'too few assessable-quality frames to fit the gate to this camera: {short} '
            f'(need {MIN_FRAMES}; blocks of {BLOCK_S:g} s dealt {"/".join(ROLES)}): '
            'record longer over skin'
        )
    return out


def with_camera(
    gate: Gate, emb: np.ndarray, parts: dict[str, np.ndarray], known: np.ndarray
) -> tuple[Gate, int]:
    """The gate with a camera reference: fitted on the 'fit' frames, bounded at the 99th
    percentile of the 'bound' frames' distances, but never reaching a frame of `known`
    (embeddings of non-lesion and spoiled frames the gate flags): a camera fitted on noisy
    frames must not let noise through. -> (gate, known frames that capped the bound)."""
    own = Reference.fit(CAMERA_DOMAIN, emb[parts['fit']])
    bound = float(np.quantile(own.distance(emb[parts['bound']]), BOUND_QUANTILE))
    near = own.distance(known) if len(known) else np.array([np.inf])
    capped = int((near * CAP_MARGIN < bound).sum())
    bound = min(bound, float(near.min()) * CAP_MARGIN)
    others = tuple(r for r in gate.references if r.domain != CAMERA_DOMAIN)
    camera = Reference(CAMERA_DOMAIN, own.mean, own.precision, bound)
    return Gate(
        gate.min_luminance, gate.max_clipped, gate.min_sharpness, gate.min_chroma,
        (*others, camera),
    ), capped  # fmt: skip


def flagged_probes(gate: Gate, probes: dict, emb: dict) -> np.ndarray:
    """Embeddings of the probe frames `gate` flags (the ones that must stay flagged)."""
    keep = [emb[k][[bool(r) for r in gate.reasons(c, emb[k])]] for k, c in probes.items()]
    return np.concatenate(keep)


def fit_camera(model_dir: str | Path, bag: str | Path, topic: str | None = None) -> dict:
    """Add (or replace) the camera reference of every variant's gate; -> the card's record."""
    model_dir = Path(model_dir)
    card = ModelCard.load(model_dir)
    if not card.gate:
        raise DataError(f'{model_dir} has no gate to extend: run python -m training gate first')
    ensure_embedding(model_dir)
    card = ModelCard.load(model_dir)
    crops, seconds, topic_name, broken = bag_crops(bag, topic, card)
    files = [name for name, info in card.files.items() if 'precision' in info]
    first = load_gate(model_dir, card, files[0])
    quality = first.reasons(crops, None)  # quality only: no embedding yet
    usable = np.array([not r for r in quality])
    parts = roles(seconds, usable)
    probes = probe_sets(card, seed=JUDGE_SEED)
    caps = {k: c for k, c in probe_sets(card, seed=CAP_SEED).items() if k not in LESION_PROBES}
    gates = json.loads((model_dir / GATE_FILE).read_text())
    rates, capped_by = {}, {}
    for file_name in files:
        old = load_gate(model_dir, card, file_name)
        engine, _ = open_variant(model_dir, file_name)
        try:
            emb = embeddings(engine, card, crops)
            probe_emb = {k: embeddings(engine, card, c) for k, c in probes.items()}
            same = {k for k, c in caps.items() if np.array_equal(c, probes.get(k))}
            cap_emb = {  # the sets that do not depend on the draw (photographs, spoiled): once
                k: probe_emb[k] if k in same else embeddings(engine, card, c)
                for k, c in caps.items()
            }
        finally:
            engine.close()
        new, capped = with_camera(old, emb, parts, flagged_probes(old, caps, cap_emb))
        gates[file_name] = new.to_dict()
        judged_idx = parts['judged']
        rates[file_name] = {
            'judged frames before': judged(old, crops[judged_idx], emb[judged_idx]),
            'judged frames after': judged(new, crops[judged_idx], emb[judged_idx]),
            'all frames before': judged(old, crops, emb),
            'all frames after': judged(new, crops, emb),
        } | {f'{k} after': judged(new, probes[k], probe_emb[k]) for k in probes}
        capped_by[file_name] = capped
        shown = {k: round(v['rate'], 3) for k, v in rates[file_name].items()}
        print(f'{file_name}: flagged {shown}; bound capped by {capped} probe frames')
    path = model_dir / GATE_FILE
    path.write_text(json.dumps(gates) + '\n')
    card.add_file(path)
    card.gate['camera'] = {
        'bag': str(bag),
        'sha256': bag_sha256(bag),
        'topic': topic_name,
        'frames': len(crops),
        'frames_not_decoded': broken,
        'frames_failing_quality': int((~usable).sum()),
        'frames_used': {k: len(v) for k, v in parts.items()},
        'block_s': BLOCK_S,
        'bound': f"{BOUND_QUANTILE:.0%} of the bound frames' distances, capped at "
        f'{CAP_MARGIN:.0%} of the nearest flagged probe frame (draw {CAP_SEED}; judged: draw '
        f'{JUDGE_SEED})',
        'quality_reasons': dict(Counter(r for r in quality if r)),
        'rates': rates,
        'bound_capped_by_probe_frames': capped_by,
    }
    card.save(model_dir)
    return card.gate['camera']


def bag_sha256(bag: str | Path) -> dict[str, str]:
    """sha256 of every file of a bag (a folder's storage files and metadata, or one file)."""
    bag = Path(bag)
    files = sorted(p for p in bag.rglob('*') if p.is_file()) if bag.is_dir() else [bag]
    return {str(p.relative_to(bag) if bag.is_dir() else p.name): sha256_file(p) for p in files}
