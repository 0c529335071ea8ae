"""TI INA3221 power monitor of Jetson boards, through sysfs.

* hwmon driver `ina3221` (JetPack 5/6, Orin): .../hwmon/hwmonN/in{1..3}_label (rail names:
  VDD_IN, VDD_CPU_GPU_CV, VDD_SOC on Orin Nano), in{i}_input (bus mV), curr{i}_input (mA).
* iio driver `ina3221x` (older kernels, JetPack 4): .../iio:deviceN/rail_name_{0..2},
  in_voltage{i}_input (mV), in_current{i}_input (mA).
"""

from __future__ import annotations

from pathlib import Path

from . import PowerReading, PowerSourceUnavailable, Rail, total_of


def _read(path: Path) -> str:
    return path.read_text().strip()


class Ina3221Source:
    name = 'ina3221'

    def __init__(self, sysfs: Path = Path('/sys')):
        drivers = Path(sysfs) / 'bus' / 'i2c' / 'drivers'
        self._channels: list[tuple[str, Path, Path]] = []
        for hwmon in sorted(drivers.glob('ina3221/*/hwmon/hwmon*')):
            for label in sorted(hwmon.glob('in*_label')):
                i = label.name[2:-6]
                volts, amps = hwmon / f'in{i}_input', hwmon / f'curr{i}_input'
                if volts.is_file() and amps.is_file():
                    self._channels.append((_read(label), volts, amps))
        for iio in sorted(drivers.glob('ina3221x/*/iio:device*')):
            for label in sorted(iio.glob('rail_name_*')):
                i = label.name.rsplit('_', 1)[1]
                volts, amps = iio / f'in_voltage{i}_input', iio / f'in_current{i}_input'
                if volts.is_file() and amps.is_file():
                    self._channels.append((_read(label), volts, amps))
        if not self._channels:
            raise PowerSourceUnavailable(f'no INA3221 channels under {drivers}')

    def read(self) -> PowerReading:
        rails = []
        for name, volts_file, amps_file in self._channels:
            try:
                volts, amps = int(_read(volts_file)) / 1000.0, int(_read(amps_file)) / 1000.0
            except (OSError, ValueError) as exc:
                raise PowerSourceUnavailable(f'INA3221 channel {name} unreadable: {exc}') from exc
            rails.append(Rail(name, volts * amps, volts, amps))
        return PowerReading(self.name, total_of(rails), rails)

    def close(self) -> None:
        pass
