"""`tegrastats` output (all Jetsons): power rails as NAME <now>mW/<avg>mW (or without units).

Examples it parses (captured formats):
  Orin:   ... VDD_IN 5256mW/5256mW VDD_CPU_GPU_CV 772mW/772mW VDD_SOC 1473mW/1473mW
  Nano:   ... POM_5V_IN 3018/3018 POM_5V_GPU 0/0 POM_5V_CPU 480/480
  Xavier: ... GPU 0/0 CPU 463/463 SOC 1389/1389 CV 0/0 VDDRQ 154/154 SYS5V 1953/1953
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading

from . import PowerReading, PowerSourceUnavailable, Rail, total_of

# A rail: upper-case name, instantaneous/average in mW, with or without the unit. Memory fields
# (RAM 2448/7620MB, IRAM 0/252kB) end in another unit and are not matched.
_RAIL = re.compile(r'\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)')
_NOT_RAILS = {'RAM', 'SWAP', 'IRAM', 'LFB', 'EMC_FREQ', 'GR3D_FREQ'}


def parse_line(line: str) -> list[Rail]:
    return [
        Rail(name, int(now) / 1000.0)
        for name, now, _ in _RAIL.findall(line)
        if name not in _NOT_RAILS
    ]


class TegrastatsSource:
    name = 'tegrastats'

    def __init__(self, interval_ms: int = 100, command: str | None = None):
        exe = command or shutil.which('tegrastats')
        if exe is None:
            raise PowerSourceUnavailable('tegrastats not found')
        self._proc = subprocess.Popen(
            [exe, '--interval', str(interval_ms)], stdout=subprocess.PIPE, text=True
        )
        self._latest: list[Rail] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        for line in self._proc.stdout:
            rails = parse_line(line)
            if rails:
                self._latest = rails

    def read(self) -> PowerReading | None:
        rails = self._latest
        if not rails:
            if self._proc.poll() is not None:
                raise PowerSourceUnavailable(f'tegrastats exited ({self._proc.returncode})')
            return None
        return PowerReading(self.name, total_of(rails), rails)

    def close(self) -> None:
        self._proc.terminate()
