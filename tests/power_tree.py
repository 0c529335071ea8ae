"""Fixture sysfs trees for the power sources: real file layouts, readings the test controls."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

INA3221_HWMON = 'bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3'


def ina3221_tree(root: Path, rails: list[tuple[str, int, int]]) -> Path:
    """An Orin-style INA3221 hwmon tree: (label, bus mV, mA) per channel."""
    hw = Path(root) / INA3221_HWMON
    hw.mkdir(parents=True, exist_ok=True)
    for i, (name, mv, ma) in enumerate(rails, start=1):
        (hw / f'in{i}_label').write_text(name + '\n')
        (hw / f'in{i}_input').write_text(f'{mv}\n')
        (hw / f'curr{i}_input').write_text(f'{ma}\n')
    return Path(root)


def rapl_tree(root: Path, energy_uj: int = 0) -> Path:
    zone = Path(root) / 'class/powercap/intel-rapl:0'
    zone.mkdir(parents=True, exist_ok=True)
    (zone / 'name').write_text('package-0\n')
    (zone / 'max_energy_range_uj').write_text('262143328850\n')
    (zone / 'energy_uj').write_text(f'{energy_uj}\n')
    return Path(root)


@contextmanager
def alternating_current(root: Path, channel: int, values_ma: tuple[int, ...], period_s: float):
    """Rewrite one channel's current every `period_s` seconds, cycling through `values_ma`."""
    path = Path(root) / INA3221_HWMON / f'curr{channel}_input'
    stop = threading.Event()

    def run():
        i = 0
        while not stop.wait(period_s):
            i += 1
            tmp = path.with_suffix('.tmp')
            tmp.write_text(f'{values_ma[i % len(values_ma)]}\n')
            tmp.replace(path)  # atomic: the node never reads a half-written value

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
