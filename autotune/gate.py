"""The resource gate: trials run only while the host is quiet (no foreign CPU load, no foreign GPU work).

Foreign means outside this process tree (the daemon, its servers and load
generators). The gate opens after the host has been quiet for `quiet_s`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from autotune import gpu
from autotune.daemon_options import GateSettings
from autotune.monitor import ProcessTree, host_busy_seconds

# How often a gate that stays closed for the same cause says its current figure again.
SAY_EVERY_S = 60.0


@dataclass(frozen=True)
class GateReading:
    foreign_cores: float
    foreign_gpu_processes: int

    def reason(self, s: GateSettings) -> str | None:
        """Why the gate is closed, or None when this reading is quiet."""
        if self.foreign_cores > s.max_foreign_cores:
            return f"foreign CPU load {self.foreign_cores:.2f} cores > {s.max_foreign_cores:g}"
        if s.check_gpu and self.foreign_gpu_processes:
            return f"{self.foreign_gpu_processes} foreign process(es) on the GPU"
        return None


class ResourceGate:
    """Samples foreign load; `wait_open` blocks until the host has been quiet long enough."""

    def __init__(self, settings: GateSettings, root_pid: int | None = None) -> None:
        self.s = settings
        self.tree = ProcessTree(root_pid or os.getpid())
        self.tree.poll()
        self._busy = host_busy_seconds()
        self._t = time.monotonic()
        self.state = "open"
        self.reason: str | None = None
        self._gpu = settings.check_gpu and gpu.device_count() > 0

    def read(self) -> GateReading:
        """Foreign load since the previous reading."""
        now, busy = time.monotonic(), host_busy_seconds()
        ours = self.tree.poll()[0]
        dt = max(now - self._t, 1e-3)
        foreign = max(0.0, (busy - self._busy) - ours) / dt
        self._t, self._busy = now, busy
        procs = gpu.sample(set(self.tree.pids())).foreign_processes if self._gpu else 0
        return GateReading(round(foreign, 3), procs)

    def wait_open(self, stop: threading.Event, on_wait: Callable[[str], None] | None = None) -> bool:
        """Block until quiet for quiet_s (True) or STOP is set (False)."""
        quiet_since: float | None = None
        said_at = float("-inf")
        self.read()
        while not stop.wait(self.s.sample_s):
            began = self._t  # a quiet reading says the host was quiet over its whole interval, from here
            reason = self.read().reason(self.s)
            if reason is None:
                quiet_since = quiet_since or began
                if time.monotonic() - quiet_since >= self.s.quiet_s:
                    self.state, self.reason = "open", None
                    return True
                continue
            quiet_since = None
            # Said when the gate closes or its cause changes, and its figure at most every SAY_EVERY_S: a
            # closed gate must not write a log line a second for as long as the foreign load lasts.
            changed = self.state != "closed" or _cause(reason) != _cause(self.reason)
            self.state, self.reason = "closed", reason
            if on_wait and (changed or time.monotonic() - said_at >= SAY_EVERY_S):
                said_at = time.monotonic()
                on_wait(reason)
        return False


def _cause(reason: str | None) -> str | None:
    """A reason without its figures: the same cause with another load reading is no news."""
    return None if reason is None else re.sub(r"\d+(\.\d+)?", "N", reason)
