"""The GPU path against real NVML: runs on a host with an NVIDIA GPU, skipped (with the reason) elsewhere."""

from __future__ import annotations

import os

import pytest

from autotune import gpu
from autotune.space import Host, build_space

HAS_GPU = gpu.device_count() > 0
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="no NVIDIA GPU visible to NVML on this host")


def test_without_a_gpu_the_memory_fraction_knob_is_absent():
    if HAS_GPU:
        pytest.skip("this host has a GPU")
    assert "gpu_memory_fraction" not in build_space({}, Host.detect())
    assert gpu.sample({os.getpid()}).util_pct is None


@needs_gpu
def test_nvml_describes_and_samples_a_real_gpu():
    assert gpu.describe() and all("driver" in d for d in gpu.describe())
    assert (gpu.total_memory_mb(0) or 0) > 1024
    sample = gpu.sample({os.getpid()})
    assert sample.util_pct is not None and sample.mem_mb is not None  # 0 when we hold no GPU memory


@needs_gpu
def test_with_a_gpu_the_memory_fraction_knob_is_searched():
    dim = build_space({}, Host.detect())["gpu_memory_fraction"]
    assert 0 < dim.low < dim.high <= 1.0


_GPU_WORKLOAD = """
import time, torch
held = torch.empty(2 * 1024**3 // 4, device="cuda")  # 2 GiB, so NVML has memory to attribute
a = torch.randn(4096, 4096, device="cuda")
print("ready", flush=True)
end = time.time() + 12
while time.time() < end:
    a @ a
    torch.cuda.synchronize()
"""


@needs_gpu
def test_the_monitor_attributes_gpu_memory_and_utilisation_to_the_server_tree():
    """NVML's per-process view, as a trial samples a server: a child holding 2 GiB and busy with matmuls.

    TensorFlow is not needed for NVML's side of this (any CUDA process will do); torch is the workload
    where the GPU host has it.
    """
    import subprocess
    import sys
    import time

    pytest.importorskip("torch")
    from autotune.monitor import ResourceMonitor

    proc = subprocess.Popen([sys.executable, "-c", _GPU_WORKLOAD], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        monitor = ResourceMonitor(proc.pid).start()
        start = time.monotonic()
        time.sleep(3)
        summary = monitor.summary(start, time.monotonic())
        monitor.stop()
    finally:
        proc.kill()
        proc.wait()
    assert summary.gpu_mem_mb is not None and summary.gpu_mem_mb >= 2000, summary
    assert summary.gpu_util_pct is not None and summary.gpu_util_pct > 10, summary
