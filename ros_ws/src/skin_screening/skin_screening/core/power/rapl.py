"""Intel RAPL through powercap sysfs: package/DRAM energy counters (microjoules) -> watts.

Power is the energy difference between two reads over their time difference, so the first
read() returns None. Counters wrap at max_energy_range_uj.
"""

from __future__ import annotations

import time
from pathlib import Path

from . import PowerReading, PowerSourceUnavailable, Rail


class RaplSource:
    name = 'rapl'

    def __init__(self, sysfs: Path = Path('/sys'), clock=time.monotonic):
        root = Path(sysfs) / 'class' / 'powercap'
        self._zones = []
        for zone in sorted(root.glob('intel-rapl:*')):
            if zone.name.count(':') != 1:  # top-level packages only (sub-zones are inside them)
                continue
            energy = zone / 'energy_uj'
            try:
                int(energy.read_text())
            except PermissionError as exc:
                raise PowerSourceUnavailable(f'{energy} is not readable (needs root)') from exc
            except (OSError, ValueError):
                continue
            wrap = zone / 'max_energy_range_uj'
            name = (zone / 'name').read_text().strip() if (zone / 'name').is_file() else zone.name
            limit = int(wrap.read_text()) if wrap.is_file() else 2**63
            self._zones.append((name, energy, limit))
        if not self._zones:
            raise PowerSourceUnavailable(f'no RAPL zones under {root}')
        self._clock, self._last = clock, None

    def read(self) -> PowerReading | None:
        now = self._clock()
        energies = [int(e.read_text()) for _, e, _ in self._zones]
        last, self._last = self._last, (now, energies)
        if last is None or now <= last[0]:
            return None
        rails = []
        for (name, _, limit), before, after in zip(self._zones, last[1], energies):
            delta = after - before if after >= before else after + limit - before
            rails.append(Rail(name, delta / 1e6 / (now - last[0])))
        return PowerReading(self.name, float(sum(r.watts for r in rails)), rails)

    def close(self) -> None:
        pass
