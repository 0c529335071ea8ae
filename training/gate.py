"""Fit and judge the unassessable-frame gate of a model folder (core/gate.py).

    python -m training gate data/models/mobilenetv2-a0.5 --clinical ../shared/datasets/pad_ufes_20

1. The engines get an 'embedding' output (pooled cut-layer activations) if they lack it: added to
   model.fp32.onnx (logits checked unchanged) and the variants rebuilt from it.
2. Per variant file, through its own engine: reference domains fitted on the release model's
   training images only (HAM10000 training folds; the clinical photographs of its training
   folds, where its split has them), each domain's distance bound = the 99th percentile of ITS
   validation images (the release model's inner validation). Quality limits from the
   0.25th / 99.75th percentiles of the validation images. No held-out image chooses anything
   (training/choosing.py records the ids: choosing/gate.json).
3. Judged on images no limit was chosen on: the held-out fold (both domains), full-resolution
   dermoscopy and non-lesion images (training/gate_sets.py). Clinical photographs that the
   model's split does not hold (a model trained without them) are split in 5 patient folds
   instead: every fold is judged by a gate fitted without it (figures pooled, with their
   spread); the shipped gate is fold 0's.
4. `--camera-bag`: the wearer's own camera as a third domain (training/gate_camera.py).
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from skin_screening.core.engines.onnxruntime import OnnxRuntimeEngine
from skin_screening.core.gate import EMBEDDING_OUTPUT, GATE_FILE, Gate, Reference, quality
from skin_screening.core.model_card import ModelCard
from skin_screening.core.precision import Precision
from skin_screening.core.preprocess import crops_batch

from . import gate_sets
from .choosing import record
from .data import DataError, release_validation, split_set
from .graph import add_embedding_output
from .variants import open_variant

REFERENCE_IMAGES = 2000
BOUND_QUANTILE = 0.99
QUALITY_QUANTILE = 0.0025
# Darkness and colour limits sit at half the validation quantile: a lesion photo under dim light
# is still judged; an underexposed (x0.08) or grey frame is not. Overexposure: more than a
# quarter of the crop clipped (or the validation quantile, if higher).
QUALITY_MARGIN, MIN_CLIPPED = 0.5, 0.25
CLINICAL_FOLDS = 5


def ensure_embedding(model_dir: Path) -> bool:
    """Add the 'embedding' output to model.fp32.onnx (and rebuild the variants from it) where it
    is missing. -> True when files were rewritten."""
    import onnx

    from .variants import VariantConfig, build_variants

    card = ModelCard.load(model_dir)
    fp32 = model_dir / 'model.fp32.onnx'
    card.verify(fp32)
    model = onnx.load(str(fp32))
    if any(o.name == EMBEDDING_OUTPUT for o in model.graph.output):
        return False
    cut = card.training.get('config', {}).get('model', {}).get('cut_layer')
    if not cut or not add_embedding_output(model, cut):
        raise DataError(f'{fp32}: no tensor of cut layer {cut!r} to pool for the gate')
    x = np.random.default_rng(0).uniform(-1, 1, (4, *model_shape(card))).astype(np.float32)
    before = OnnxRuntimeEngine(fp32, Precision.FP32).infer({card.input_name: x})
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / fp32.name
        onnx.save(model, str(candidate))
        after = OnnxRuntimeEngine(candidate, Precision.FP32).infer({card.input_name: x})
        if not all(np.array_equal(before[k], after[k]) for k in before):
            raise DataError('adding the embedding output changed the other outputs')
        fp32.write_bytes(candidate.read_bytes())
    entry = card.files[fp32.name]
    card.add_file(fp32, **{k: v for k, v in entry.items() if k not in ('sha256', 'bytes')})
    card.files[fp32.name]['outputs'] = sorted(after)
    card.save(model_dir)
    files = [v for v in card.files.values() if 'precision' in v]
    variants = [(v['precision'], v.get('flavour')) for v in files]

    precisions = tuple(sorted({p for p, _ in variants} - {'fp32'}))
    backends = ('onnxruntime', 'tensorrt') if ('int8', 's8') in variants else ('onnxruntime',)
    if precisions:
        build_variants(model_dir, VariantConfig(precisions=precisions, backends=backends))
    return True


def model_shape(card: ModelCard) -> tuple[int, int, int]:
    size = card.preprocessing.input_size
    return size, size, 3


def embeddings(engine, card: ModelCard, crops: np.ndarray) -> np.ndarray:
    out = [
        engine.infer({card.input_name: crops_batch(crops[s : s + 32], card.preprocessing)})[
            EMBEDDING_OUTPUT
        ]
        for s in range(0, len(crops), 32)
    ]
    return np.concatenate(out).reshape(len(crops), -1)


def patient_folds(groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import GroupKFold

    fold = np.zeros(len(groups), np.int64)
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, index) in enumerate(splitter.split(np.zeros(len(groups)), groups=groups)):
        fold[index] = k
    return fold


def fold_roles(clinical_fold: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Clinical patient folds of an external set: fold k judged, fold k+1 sets the bound, the
    rest fit the reference."""
    bound_fold = (k + 1) % CLINICAL_FOLDS
    fit = (clinical_fold != k) & (clinical_fold != bound_fold)
    return {'fit': np.nonzero(fit)[0], 'bound': np.nonzero(clinical_fold == bound_fold)[0]}


def split_roles(model_dir: Path, paths: list[Path]) -> dict[str, np.ndarray] | None:
    """Where the model's own split holds these clinical photographs: the release model's
    training folds fit the reference, its inner validation sets the bound and the held-out
    fold is judged (photos outside the split: in no role). None when the split has none."""
    data, fold = split_set(model_dir)
    where = {Path(p).stem: int(k) for p, k in zip(data.paths, fold)}
    if not any(Path(p).stem in where for p in paths):
        return None
    held = int(ModelCard.load(model_dir).data.get('heldout_fold', 0))
    validation = set(release_validation(model_dir).ids)
    stems = [Path(p).stem for p in paths]
    role = np.array(
        [
            'none' if s not in where
            else 'judged' if where[s] == held
            else 'bound' if s in validation
            else 'fit'
            for s in stems
        ]
    )  # fmt: skip
    return {name: np.nonzero(role == name)[0] for name in ('fit', 'bound', 'judged')}


def fit_gate(parts: dict, clinical_roles: dict[str, np.ndarray] | None) -> Gate:
    """The gate: the dermoscopy reference and bound, and with `clinical_roles` a clinical one
    (its 'fit' images the reference, its 'bound' images the bound)."""
    references, val_crops = [], [parts['val']['crops']]
    ham = Reference.fit('dermoscopy', parts['reference']['emb'])
    bound = np.quantile(ham.distance(parts['val']['emb']), BOUND_QUANTILE)
    references.append(Reference(ham.domain, ham.mean, ham.precision, float(bound)))
    if clinical_roles is not None:
        emb, crops = parts['clinical']['emb'], parts['clinical']['crops']
        own = Reference.fit('clinical', emb[clinical_roles['fit']])
        bound = np.quantile(own.distance(emb[clinical_roles['bound']]), BOUND_QUANTILE)
        references.append(Reference(own.domain, own.mean, own.precision, float(bound)))
        val_crops.append(crops[clinical_roles['bound']])
    q = quality(np.concatenate(val_crops))
    low, high = QUALITY_QUANTILE, 1 - QUALITY_QUANTILE
    return Gate(
        min_luminance=QUALITY_MARGIN * float(np.quantile(q['luminance'], low)),
        max_clipped=max(MIN_CLIPPED, float(np.quantile(q['clipped'], high))),
        min_sharpness=float(np.quantile(q['sharpness'], low)),
        min_chroma=QUALITY_MARGIN * float(np.quantile(q['chroma'], low)),
        references=tuple(references),
    )


def judged(gate: Gate, crops: np.ndarray, emb: np.ndarray) -> dict:
    reasons = gate.reasons(crops, emb)
    flagged = [r for r in reasons if r]
    return {
        'images': len(reasons),
        'flagged': len(flagged),
        'rate': len(flagged) / max(1, len(reasons)),
        'reasons': dict(Counter(flagged)),
    }


def dermoscopy_choosers(model_dir: Path, seed: int):
    """-> (split images, fold per image, reference image indices, validation images) of the
    primary domain: up to REFERENCE_IMAGES of the release model's training folds outside its
    inner validation (seeded), and that validation."""
    card = ModelCard.load(model_dir)
    data, fold = split_set(model_dir)
    held = int(card.data.get('heldout_fold', 0))
    primary = data.domains == data.domain_names[0]
    val = release_validation(model_dir)
    val = val.subset(np.nonzero(val.domains == data.domain_names[0])[0])
    validation = set(val.ids)
    pool = [i for i in np.nonzero((fold != held) & primary)[0] if data.ids[i] not in validation]
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(pool, min(REFERENCE_IMAGES, len(pool)), replace=False))
    return data, fold, pick, val


def collect(model_dir: Path, clinical: Path | None, seed: int) -> dict:
    """Crops of every set (engine-independent), by name."""
    card = ModelCard.load(model_dir)
    spec = card.preprocessing
    held = int(card.data.get('heldout_fold', 0))
    data, fold, pick, val = dermoscopy_choosers(model_dir, seed)
    primary = data.domains == data.domain_names[0]  # dermoscopy; clinical: --clinical's folds
    sets = {
        'reference': gate_sets.load_crops([data.paths[i] for i in pick], spec),
        'val': gate_sets.load_crops(val.paths, spec),
        'heldout': gate_sets.load_crops(
            [data.paths[i] for i in np.nonzero((fold == held) & primary)[0]], spec
        ),
    }
    out = {name: {'crops': c} for name, c in (sets | probe_sets(card, seed)).items()}
    if clinical is not None:
        paths, groups = gate_sets.labelled_folder(clinical, 'patient_id')
        out['clinical'] = {
            'crops': gate_sets.load_crops(paths, spec),
            'groups': groups,
            'ids': [Path(p).stem for p in paths],
            'roles': split_roles(model_dir, paths),
        }
    out['reference']['ids'] = [data.ids[i] for i in pick]
    out['val']['ids'] = list(val.ids)
    return out


def probe_sets(card: ModelCard, seed: int) -> dict[str, np.ndarray]:
    """Crops of the sets no limit is chosen on, by name: non-lesion photographs (whole and
    parts), synthetic frames, and where ../shared has them full-resolution dermoscopy and the
    same images spoiled (blurred, under- and overexposed)."""
    spec = card.preprocessing
    photos, parts = gate_sets.non_lesion_photos(seed)
    sets = {
        'photographs': gate_sets.crops(photos, spec),
        'photograph parts': gate_sets.crops(parts, spec),
        'synthetic': gate_sets.crops(gate_sets.synthetic_frames(seed), spec),
    }
    fullres = Path(card.data.get('root', '')).parent / 'ham10000_fullres_sample'
    if (fullres / 'labels.csv').is_file():
        originals = [gate_sets.load_rgb(p) for p in gate_sets.labelled_folder(fullres, 'image')[0]]
        sets['full-resolution dermoscopy'] = gate_sets.crops(originals, spec)
        for name, images in gate_sets.spoiled(originals).items():
            sets[name] = gate_sets.crops(images, spec)
    return sets


def fit_and_judge(model_dir: str | Path, clinical: str | Path | None = None, seed: int = 0):
    model_dir = Path(model_dir)
    if clinical is not None and not (Path(clinical) / 'labels.csv').is_file():
        raise DataError(f'{clinical} has no labels.csv (image, patient_id): not a clinical set')
    ensure_embedding(model_dir)
    parts = collect(model_dir, Path(clinical) if clinical else None, seed)
    clinical_fold, roles = None, None
    if 'clinical' in parts:
        roles = parts['clinical']['roles']  # the model's split, where it has these photos
        if roles is None:  # an external set: patient folds of its own
            clinical_fold = patient_folds(parts['clinical']['groups'], CLINICAL_FOLDS, seed)
            roles = fold_roles(clinical_fold, 0)
    card = ModelCard.load(model_dir)
    gates, evaluation = {}, {}
    for file_name, info in card.files.items():
        if 'precision' not in info:
            continue
        engine, _ = open_variant(model_dir, file_name)
        for part in parts.values():
            part['emb'] = embeddings(engine, card, part['crops'])
        engine.close()
        gate = fit_gate(parts, roles)
        gates[file_name] = gate.to_dict()
        report = {
            name: judged(gate, p['crops'], p['emb'])
            for name, p in parts.items()
            if name not in ('reference', 'val', 'clinical')
        }
        if clinical_fold is not None:
            report |= clinical_report(parts, clinical_fold)
        elif roles is not None:
            c, judged_idx = parts['clinical'], roles['judged']
            report['clinical (held-out fold)'] = judged(
                gate, c['crops'][judged_idx], c['emb'][judged_idx]
            )
        evaluation[file_name] = report
        print(f'{file_name}: ' + ', '.join(f'{k} {v["rate"]:.3f}' for k, v in report.items()))
    path = model_dir / GATE_FILE
    path.write_text(json.dumps(gates) + '\n')
    card = ModelCard.load(model_dir)
    card.add_file(path)
    card.gate = {
        'file': GATE_FILE,
        'embedding_output': EMBEDDING_OUTPUT,
        'chosen_on': {
            'reference': f'{len(parts["reference"]["crops"])} HAM10000 training-fold images'
            + clinical_words(roles, clinical_fold),
            'bounds': f'{BOUND_QUANTILE:.0%} of validation distances; quality limits at the '
            f'{QUALITY_QUANTILE:.2%} / {1 - QUALITY_QUANTILE:.2%} quantiles of validation images',
            'clinical': str(clinical) if clinical else None,
            'seed': seed,
        },
        'evaluation': evaluation,
    }
    card.save(model_dir)
    chose = parts['reference']['ids'] + parts['val']['ids']
    if roles is not None:
        chose += [parts['clinical']['ids'][i] for i in (*roles['fit'], *roles['bound'])]
    held = int(card.data.get('heldout_fold', 0))
    record(model_dir, 'gate', 'gate references, distance bounds and quality limits', {held: chose})
    return card.gate


def clinical_words(roles, clinical_fold) -> str:
    if roles is None:
        return ''
    if clinical_fold is not None:
        return ', clinical photographs of 3 of 5 patient folds'
    return (
        f", {len(roles['fit'])} clinical photographs of the release model's training folds "
        f'(bound: {len(roles["bound"])} of its inner validation)'
    )


def clinical_report(parts: dict, clinical_fold: np.ndarray) -> dict:
    """Clinical photographs of patients outside fitting and bounds: fold 0 under the shipped
    gate, and every fold under the gate fitted without it (pooled, with the per-fold spread)."""
    c = parts['clinical']
    rates, flagged = [], 0
    for k in range(CLINICAL_FOLDS):
        gate = fit_gate(parts, fold_roles(clinical_fold, k))
        m = clinical_fold == k
        result = judged(gate, c['crops'][m], c['emb'][m])
        rates.append(result['rate'])
        flagged += result['flagged']
        if k == 0:
            shipped = result
    return {
        'clinical (held-out patients)': shipped,
        'clinical (5 patient folds)': {
            'images': len(clinical_fold),
            'flagged': flagged,
            'rate': flagged / len(clinical_fold),
            'fold_rates': rates,
            'reasons': {},
        },
    }
