"""NVIDIA GPU power via NVML (nvidia-ml-py): board power of each GPU (GPU only, not the host)."""

from __future__ import annotations

from . import PowerReading, PowerSourceUnavailable, Rail


class NvmlSource:
    name = 'nvml'

    def __init__(self):
        try:
            import pynvml
        except ImportError as exc:
            raise PowerSourceUnavailable('nvidia-ml-py (pynvml) not installed') from exc
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
        except Exception as exc:  # pynvml.NVMLError: no driver / no GPU
            raise PowerSourceUnavailable(f'NVML unavailable: {exc}') from exc
        if count == 0:
            raise PowerSourceUnavailable('NVML found no GPU')
        self._nvml = pynvml
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]

    def read(self) -> PowerReading:
        rails = [
            Rail(f'GPU{i}', self._nvml.nvmlDeviceGetPowerUsage(h) / 1000.0)
            for i, h in enumerate(self._handles)
        ]
        return PowerReading(self.name, float(sum(r.watts for r in rails)), rails)

    def close(self) -> None:
        self._nvml.nvmlShutdown()
