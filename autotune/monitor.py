"""Resource sampling during measurement windows.

A background thread samples at a fixed rate: CPU (in cores) and RSS of the
server's whole process tree, CPU used on the host outside our processes
(foreign load, i.e. interference), and GPU use through NVML when present.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import psutil

from autotune import gpu
from autotune.load.stats import max_of_present, mean_of_present


@dataclass(frozen=True)
class Sample:
    """Resource use over the interval ending at `t` (monotonic seconds)."""

    t: float
    server_cores: float | None  # None: the server's process is not visible here (a remote --target)
    server_rss_mb: float | None
    foreign_cores: float
    gpu_util_pct: float | None
    gpu_mem_mb: float | None
    gpu_power_w: float | None = None


@dataclass(frozen=True)
class ResourceSummary:
    """Aggregate of the samples in a time range."""

    cpu_cores: float | None
    rss_mb: float | None
    foreign_cores: float | None
    gpu_util_pct: float | None
    gpu_mem_mb: float | None
    samples: int
    gpu_power_w: float | None = None
    rss_mean_mb: float | None = None


class ProcessTree:
    """CPU-time accounting of a process tree; children that come and go are tracked."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.procs: dict[int, psutil.Process] = {}
        self.last: dict[int, float] = {}

    def pids(self) -> set[int]:
        return set(self.procs)

    def poll(self) -> tuple[float, float]:
        """(CPU seconds used since the previous poll, RSS MiB now)."""
        try:
            root = psutil.Process(self.root_pid)
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            members = []
        used = 0.0
        rss = 0.0
        alive: dict[int, psutil.Process] = {}
        for p in members:
            proc = self.procs.get(p.pid, p)
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    total = times.user + times.system
                    rss += proc.memory_info().rss / 2**20
            except psutil.Error:
                continue
            # A process first seen now was born during this interval: all its CPU is new.
            used += max(0.0, total - self.last.get(p.pid, 0.0))
            self.last[p.pid] = total
            alive[p.pid] = proc
        self.procs = alive
        # Only the living: a daemon's tree sees every server and load generator it ever starts (months of them).
        self.last = {pid: cpu for pid, cpu in self.last.items() if pid in alive}
        return used, rss


class ResourceMonitor:
    """Sample a server tree (and know our other processes) until stopped."""

    def __init__(self, server_pid: int | None, own_pids: set[int] | None = None, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.server = ProcessTree(server_pid) if server_pid else None
        self.own_trees: dict[int, ProcessTree] = {}
        for pid in own_pids or set():
            self.add_own_pid(pid)
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resource-monitor", daemon=True)
        self.gpu_present = gpu.device_count() > 0

    def add_own_pid(self, pid: int) -> None:
        """Count PID's tree (e.g. the load generator) as ours, not foreign."""
        tree = ProcessTree(pid)
        tree.poll()  # CPU it used before now is not this interval's
        self.own_trees[pid] = tree

    def start(self) -> ResourceMonitor:
        self._prime()
        self._thread.start()
        return self

    def _prime(self) -> None:
        if self.server is not None:
            self.server.poll()
        self._sys_busy = host_busy_seconds()
        self._self_cpu = _self_cpu_seconds()
        self._last_t = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        now = time.monotonic()
        dt = now - self._last_t
        if dt <= 0:
            return
        server_cpu, rss = self.server.poll() if self.server is not None else (0.0, 0.0)
        own_cpu = _self_cpu_seconds() - self._self_cpu
        self._self_cpu += own_cpu
        for tree in list(self.own_trees.values()):
            own_cpu += tree.poll()[0]
        busy = host_busy_seconds()
        foreign = max(0.0, (busy - self._sys_busy) - server_cpu - own_cpu)
        g = gpu.sample(self.server.pids()) if self.gpu_present and self.server else gpu.GpuSample(None, None, 0)
        seen = self.server is not None
        cores, rss_mb = (server_cpu / dt, rss) if seen else (None, None)
        self.samples.append(Sample(now, cores, rss_mb, foreign / dt, g.util_pct, g.mem_mb, g.power_w))
        self._sys_busy = busy
        self._last_t = now

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def summary(self, start: float, end: float) -> ResourceSummary:
        """Mean CPU, peak and mean RSS, peak GPU memory, mean foreign load over samples in [start, end]."""
        picked = [s for s in self.samples if start < s.t <= end + self.interval_s / 2]
        if not picked:
            return ResourceSummary(None, None, None, None, None, 0)

        return ResourceSummary(
            cpu_cores=mean_of_present([s.server_cores for s in picked]),
            rss_mb=max_of_present([s.server_rss_mb for s in picked]),
            foreign_cores=mean_of_present([s.foreign_cores for s in picked]),
            gpu_util_pct=mean_of_present([s.gpu_util_pct for s in picked]),
            gpu_mem_mb=max_of_present([s.gpu_mem_mb for s in picked]),
            samples=len(picked),
            gpu_power_w=mean_of_present([s.gpu_power_w for s in picked]),
            rss_mean_mb=mean_of_present([s.server_rss_mb for s in picked]),
        )


def host_busy_seconds() -> float:
    """Host CPU seconds spent not idle, summed over all cores, since boot."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def _self_cpu_seconds() -> float:
    """CPU seconds of this process alone (not its children, which are counted as trees)."""
    t = psutil.Process().cpu_times()
    return t.user + t.system
