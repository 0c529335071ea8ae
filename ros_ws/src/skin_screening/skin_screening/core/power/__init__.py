"""Power sources: INA3221 (hwmon sysfs or legacy iio), tegrastats, NVML, Intel RAPL.

Every source reads REAL counters; `detect_source()` tries them in that order and raises
PowerSourceUnavailable (with each source's reason) when the machine has none: callers then say
so and publish nothing, never invented numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class PowerSourceUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Rail:
    name: str
    watts: float
    volts: float = math.nan
    amps: float = math.nan


@dataclass(frozen=True)
class PowerReading:
    source: str
    total_watts: float
    rails: list[Rail] = field(default_factory=list)


INPUT_RAILS = ('VDD_IN', 'POM_5V_IN', 'VIN_SYS_5V0')  # board input (Orin, Nano/TX2, Xavier NX)


def total_of(rails: list[Rail]) -> float:
    """The board input rail where there is one, else the sum of the rails."""
    for rail in rails:
        if rail.name in INPUT_RAILS:
            return rail.watts
    return float(sum(r.watts for r in rails))


def detect_source(sysfs: Path = Path('/sys'), order: tuple[str, ...] | None = None):
    """The first available source, in auto-detect order (or `order`, e.g. ('rapl',))."""
    from .ina3221 import Ina3221Source
    from .nvml import NvmlSource
    from .rapl import RaplSource
    from .tegrastats import TegrastatsSource

    makers: dict[str, Callable] = {
        'ina3221': lambda: Ina3221Source(sysfs),
        'tegrastats': TegrastatsSource,
        'nvml': NvmlSource,
        'rapl': lambda: RaplSource(sysfs),
    }
    reasons = []
    for name in order or tuple(makers):
        if name not in makers:
            raise ValueError(f'unknown power source {name!r}; known: {list(makers)}')
        try:
            return makers[name]()
        except PowerSourceUnavailable as exc:
            reasons.append(f'{name}: {exc}')
    raise PowerSourceUnavailable('no power source on this machine (' + '; '.join(reasons) + ')')
