"""Copy a training run's release artifacts into data/models/<name>/ (the shipped model folder).

Copies model.fp32.onnx, model_card.json, split.csv, heldout.csv, config.yaml and the records of
which images chose what (choosing/, training/choosing.py). Releasing the
same run again (same ONNX hash) refreshes the card's metrics and training record and keeps the
variants already built; a different model never silently replaces an existing folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from skin_screening.core.model_card import ModelCard

from .choosing import CHOOSING

FILES = ('model.fp32.onnx', 'split.csv', 'heldout.csv', 'config.yaml')


def release(run_dir: str | Path, dest: str | Path, replace: bool = False) -> Path:
    run_dir, dest = Path(run_dir), Path(dest)
    card = ModelCard.load(run_dir)
    if (dest / 'model_card.json').is_file():
        current = ModelCard.load(dest)
        same = (
            current.files.get('model.fp32.onnx', {}).get('sha256')
            == card.files['model.fp32.onnx']['sha256']
        )
        if same:
            current.metrics, current.training = card.metrics, card.training
            current.save(dest)
            return dest
        if not replace:
            raise FileExistsError(f'{dest} holds another model; pass --replace to overwrite it')
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy2(run_dir / name, dest / name)
    if (run_dir / CHOOSING).is_dir():  # which images chose what (training/choosing.py)
        shutil.copytree(run_dir / CHOOSING, dest / CHOOSING, dirs_exist_ok=True)
    card.training['run_dir'] = str(run_dir)
    card.save(dest)
    return dest
