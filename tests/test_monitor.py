"""Resource sampling: process-tree CPU and RSS, foreign load, and NVML's absence or failure."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from autotune import gpu
from autotune.monitor import ResourceMonitor

BURN = "import time\nend = time.time() + {s}\nwhile time.time() < end: pass\n"


def _burner(seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", BURN.format(s=seconds)])


def test_server_tree_cpu_counts_children_and_foreign_load_is_separate():
    # "server": a parent that spawns a burning child, so only the tree view sees the work.
    tree = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BURN.format(s=4)!r}])"]
    )
    foreign = _burner(4)
    try:
        monitor = ResourceMonitor(tree.pid, interval_s=0.2).start()
        time.sleep(0.5)
        start = time.monotonic()
        time.sleep(2.0)
        end = time.monotonic()
        monitor.stop()
        summary = monitor.summary(start, end)
    finally:
        import psutil

        for child in psutil.Process(tree.pid).children(recursive=True):
            child.kill()
        for p in (tree, foreign):
            p.kill()
            p.wait()
    assert summary.samples >= 5
    assert 0.6 < summary.cpu_cores < 1.2  # one busy core in a child of the server process
    assert summary.foreign_cores > 0.5  # the other busy core is not ours
    assert summary.rss_mb > 5
    assert summary.gpu_util_pct is None and summary.gpu_mem_mb is None


def test_our_load_generator_is_not_counted_as_foreign():
    server = _burner(0.1)
    ours = _burner(4)
    try:
        monitor = ResourceMonitor(server.pid, own_pids={ours.pid}, interval_s=0.2).start()
        start = time.monotonic()
        time.sleep(2.0)
        monitor.stop()
        summary = monitor.summary(start, time.monotonic())
    finally:
        for p in (server, ours):
            p.kill()
            p.wait()
    assert summary.foreign_cores < 0.4


@pytest.fixture
def fake_nvml(monkeypatch):
    """NVML is the one thing this machine cannot have: stand in for pynvml's API."""
    gpu.reset()
    procs = [SimpleNamespace(pid=111, usedGpuMemory=512 * 2**20), SimpleNamespace(pid=999, usedGpuMemory=2**30)]
    fake = SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetComputeRunningProcesses=lambda h: procs,
        nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=73),
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(total=16 * 2**30),
        nvmlDeviceGetPowerUsage=lambda h: 215_500,  # milliwatts
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    yield fake
    gpu.reset()


def test_gpu_sample_counts_our_processes_and_foreign_ones(fake_nvml):
    s = gpu.sample({111})
    assert s.util_pct == 73 and s.mem_mb == 512 and s.foreign_processes == 1
    assert s.power_w == 215.5
    assert gpu.total_memory_mb(0) == 16384


def test_a_board_without_power_readings_still_samples(fake_nvml):
    def not_supported(handle):
        raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")

    fake_nvml.nvmlDeviceGetPowerUsage = not_supported
    s = gpu.sample({111})
    assert s.power_w is None and s.util_pct == 73


def test_nvml_init_failure_means_no_gpu_not_a_crash(monkeypatch):
    gpu.reset()

    def fail():
        raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setitem(sys.modules, "pynvml", SimpleNamespace(nvmlInit=fail))
    try:
        assert gpu.device_count() == 0
        assert gpu.sample({1}) == gpu.GpuSample(None, None, 0)
        assert gpu.total_memory_mb(0) is None
    finally:
        gpu.reset()


def test_nvml_missing_module_means_no_gpu(monkeypatch):
    gpu.reset()
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    try:
        assert gpu.device_count() == 0
    finally:
        gpu.reset()


def test_a_process_tree_forgets_the_children_that_have_exited():
    # The daemon's gate polls its own tree for months: every server it ever started must not stay in it.
    import os
    import subprocess
    import sys

    from autotune.monitor import ProcessTree

    tree = ProcessTree(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree.poll()
        assert child.pid in tree.last
    finally:
        child.kill()
        child.wait()
    tree.poll()
    assert child.pid not in tree.last and child.pid not in tree.pids()
