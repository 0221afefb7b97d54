"""NVML (pynvml) access that degrades to None when there is no GPU or driver."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

_lock = threading.Lock()
_state: dict[str, Any] = {"tried": False, "nvml": None}


def _nvml() -> Any | None:
    """The initialised pynvml module, or None when NVML is unavailable."""
    with _lock:
        if not _state["tried"]:
            _state["tried"] = True
            try:
                import pynvml

                pynvml.nvmlInit()
                _state["nvml"] = pynvml
            except Exception:  # ImportError, NVMLError_LibraryNotFound, driver errors
                _state["nvml"] = None
        return _state["nvml"]


def reset() -> None:
    """Forget the NVML probe (tests swap pynvml in and out)."""
    with _lock:
        _state.update(tried=False, nvml=None)


def device_count() -> int:
    """Number of NVIDIA GPUs NVML sees (0 without NVML)."""
    nvml = _nvml()
    if nvml is None:
        return 0
    try:
        return int(nvml.nvmlDeviceGetCount())
    except Exception:
        return 0


def total_memory_mb(index: int) -> int | None:
    """Total memory of GPU INDEX in MiB, or None."""
    nvml = _nvml()
    if nvml is None:
        return None
    try:
        return int(nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(index)).total // 2**20)
    except Exception:
        return None


def describe() -> list[str]:
    """'NAME (driver X)' for each GPU NVML sees; empty without NVML."""
    nvml = _nvml()
    if nvml is None:
        return []
    try:
        driver = nvml.nvmlSystemGetDriverVersion()
        names = [nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(nvml.nvmlDeviceGetCount())]
    except Exception:
        return []
    return [f"{n.decode() if isinstance(n, bytes) else n} (driver {driver})" for n in names]


@dataclass(frozen=True)
class GpuSample:
    """GPU use at one instant: mean utilization over devices our processes use, their memory."""

    util_pct: float | None
    mem_mb: float | None
    foreign_processes: int  # compute processes on any GPU that are not ours
    power_w: float | None = None  # board power of the devices our processes use (None: not supported)


def sample(pids: set[int]) -> GpuSample:
    """Sample utilization and the memory of PIDS; all None without NVML."""
    nvml = _nvml()
    if nvml is None:
        return GpuSample(None, None, 0)
    utils: list[float] = []
    power: list[float] = []
    mem = 0.0
    foreign = 0
    try:
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            procs = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            ours = [p for p in procs if p.pid in pids]
            foreign += len(procs) - len(ours)
            if ours:
                utils.append(float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
                mem += sum((p.usedGpuMemory or 0) for p in ours) / 2**20
                watts = _power_w(nvml, handle)
                if watts is not None:
                    power.append(watts)
    except Exception:
        return GpuSample(None, None, 0)
    return GpuSample(sum(utils) / len(utils) if utils else 0.0, mem, foreign, sum(power) if power else None)


def _power_w(nvml: Any, handle: Any) -> float | None:
    # Many boards (and all MIG slices) do not report power; that is not an error.
    try:
        return nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
    except Exception:
        return None
