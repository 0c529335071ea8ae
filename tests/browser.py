"""A real headless browser (Debian's chromium) looking at a page as a person would."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np


def chromium() -> str | None:
    return shutil.which('chromium') or shutil.which('chromium-browser')


def _run(page: Path, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                chromium(),
                '--headless',
                '--no-sandbox',
                '--disable-gpu',
                '--no-first-run',
                f'--user-data-dir={profile}',
                '--enable-logging=stderr',
                '--v=0',
                *args,
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )


def load(page: Path) -> tuple[str, list[str]]:
    """(the DOM after load, error lines of the browser: console errors, failed loads)."""
    done = _run(page, '--dump-dom')
    errors = [
        line
        for line in done.stderr.splitlines()
        if ('CONSOLE' in line and 'ERROR' in line) or 'net::ERR' in line or 'Uncaught' in line
    ]
    if done.returncode:
        errors.append(f'chromium exited with {done.returncode}')
    return done.stdout, errors


def screenshot(page: Path, png: Path, width: int = 1000, height: int = 2200) -> np.ndarray:
    """A screenshot of `page` at width x height, saved to `png` and returned (BGR)."""
    done = _run(
        page,
        f'--screenshot={png.resolve()}',
        f'--window-size={width},{height}',
        '--hide-scrollbars',
    )
    assert png.is_file(), done.stderr[-2000:]
    return cv2.imread(str(png))


def photo_tiles(image: np.ndarray, tile: int = 50) -> int:
    """Tiles of the screenshot that show a photograph: colourful (mean HSV saturation > 40) and
    textured (grey-level standard deviation > 8), which text on white and flat fills are not."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    count = 0
    for y in range(0, image.shape[0] - tile + 1, tile):
        for x in range(0, image.shape[1] - tile + 1, tile):
            if (
                hsv[y : y + tile, x : x + tile, 1].mean() > 40
                and grey[y : y + tile, x : x + tile].std() > 8
            ):
                count += 1
    return count
