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
