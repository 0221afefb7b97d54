"""How much CPU a server may use: a core set (affinity) plus a CFS quota for fractional allowances.

An allowance of `cpus` cores pins the server to ceil(cpus) cores, so TensorFlow's
thread pools (sized from the affinity mask, as TF Serving's are) follow it, and,
when `cpus` is not whole, caps its CPU time with a CFS quota in a cgroup of its own
(cgroup v1 `cpu` or v2 `cpu.max`). Where the quota cannot be applied, the reason is
said, never ignored. Planning is pure; CpuCgroup is the one side effect.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autotune.cores import MIN_CORES_TO_SPLIT, pin_to
from autotune.errors import AutotuneError

CFS_PERIOD_US = 100_000  # the kernel's default period; docker --cpus uses it too
# Below a tenth of a core the quota's granularity (and a Python server's start-up) dominates.
MIN_CPUS = 0.1


@dataclass(frozen=True)
class CpuPlan:
    """Where a server with an allowance runs: its cores, its quota, and the cores left to the load generator."""

    cpus: float  # the allowance; 0 means every schedulable core, no limit
    server_cores: list[int]
    client_cores: list[int]  # cores outside the server's set (empty: they share)
    quota_us: int | None  # CFS quota per CFS_PERIOD_US, only for fractional allowances

    @property
    def allocated(self) -> float:
        """Cores the server may use: what a deployment pays for."""
        return self.cpus or float(len(self.server_cores))


def whole_cores(cpus: float) -> int:
    """The cores an allowance of CPUS spans: the server's core set, and the thread pools TF sizes from it."""
    return math.ceil(cpus - 1e-9)


def quota_error(problem: str) -> AutotuneError:
    """The one-line error for a fractional allowance this host cannot enforce, saying why (PROBLEM)."""
    return AutotuneError(f"cpus: a fractional allowance needs a CFS quota, but {problem}")


def check_enforceable(cpus: float, available: int, quota_problem: str | None) -> None:
    """check_cpus, and that a fractional CPUS has a quota to enforce it (QUOTA_PROBLEM: why not; None: it has)."""
    check_cpus(cpus, available)
    if not float(cpus).is_integer() and quota_problem is not None:
        raise quota_error(quota_problem)


def check_cpus(cpus: float, available: int) -> None:
    """Raise a one-line AutotuneError when this host cannot give CPUS cores (0 means all of them)."""
    if cpus == 0:
        return
    if cpus < MIN_CPUS:
        raise AutotuneError(f"cpus: {cpus:g} is below the smallest allowance, {MIN_CPUS:g} of a core")
    if cpus > available:
        raise AutotuneError(f"cpus: {cpus:g} is more than the {available} cores this host lets autotune schedule on")


def plan_cpus(cpus: float, cores: list[int], split_at: int = MIN_CORES_TO_SPLIT) -> CpuPlan:
    """The plan for an allowance of CPUS on CORES (the schedulable ones).

    A limited server takes the first ceil(cpus) cores and the generator the rest; an unlimited one
    shares unless the host has SPLIT_AT cores or more (then the generator keeps one for itself).
    """
    check_cpus(cpus, len(cores))
    if cpus == 0:
        if len(cores) >= split_at:
            return CpuPlan(0.0, cores[:-1], cores[-1:], None)
        return CpuPlan(0.0, list(cores), [], None)
    whole = whole_cores(cpus)
    quota = None if float(cpus).is_integer() else round(cpus * CFS_PERIOD_US)
    return CpuPlan(float(cpus), cores[:whole], cores[whole:], quota)


def _mounts() -> list[tuple[str, str, list[str]]]:
    """(mount point, fstype, options) of the cgroup file systems."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
            out.append((parts[1], parts[2], parts[3].split(",")))
    return out


def _own_cgroup(controller: str | None) -> str:
    """This process's cgroup path for CONTROLLER (v1), or its unified path (v2: CONTROLLER None)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        _, names, path = line.split(":", 2)
        if (controller is None and names == "") or (controller and controller in names.split(",")):
            return path
    return "/"


@dataclass(frozen=True)
class CgroupParent:
    """Where autotune's per-server cgroups go, and in which format their quota is written."""

    path: Path
    version: int


def find_cgroup_parent() -> CgroupParent | str:
    """The writable cgroup under which a quota can be set, or why there is none (one line)."""
    mounts = _mounts()
    for point, kind, options in mounts:
        if kind == "cgroup" and "cpu" in options:
            parent = Path(point) / _own_cgroup("cpu").lstrip("/")
            if (parent / "cpu.cfs_quota_us").exists() and os.access(parent, os.W_OK):
                return CgroupParent(parent, 1)
            return f"the cgroup v1 cpu controller at {parent} is not writable by this user"
    for point, kind, _ in mounts:
        if kind == "cgroup2":
            parent = Path(point) / _own_cgroup(None).lstrip("/")
            try:
                enabled = (parent / "cgroup.subtree_control").read_text().split()
            except OSError:
                enabled = []
            if "cpu" in enabled and os.access(parent, os.W_OK):
                return CgroupParent(parent, 2)
            return (
                f"the cgroup v2 cpu controller is not delegated to {parent} "
                "(on systemd hosts run autotune under `systemd-run --user --scope -p Delegate=yes`)"
            )
    return "no cgroup file system is mounted"


def quota_problem() -> str | None:
    """Why a fractional `cpus` cannot be enforced on this host, or None when it can."""
    found = find_cgroup_parent()
    return found if isinstance(found, str) else None


class CpuCgroup:
    """One server's own cgroup with a CFS quota: created before the server starts, removed after it stops."""

    def __init__(self, quota_us: int, period_us: int = CFS_PERIOD_US) -> None:
        found = find_cgroup_parent()
        if isinstance(found, str):
            raise quota_error(found)
        self.version = found.version
        self.path = found.path / f"autotune-{uuid.uuid4().hex[:12]}"
        try:
            self.path.mkdir()
            if self.version == 1:
                (self.path / "cpu.cfs_period_us").write_text(str(period_us))
                (self.path / "cpu.cfs_quota_us").write_text(str(quota_us))
            else:
                (self.path / "cpu.max").write_text(f"{quota_us} {period_us}")
        except OSError as exc:
            self.remove()
            raise AutotuneError(f"cpus: cannot set a CFS quota in {self.path}: {exc.strerror}") from None

    def join(self) -> None:
        """Move the calling process into the cgroup (from a child before exec: all it starts stays there)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def throttling(self) -> tuple[int, float] | None:
        """(periods throttled, seconds throttled) so far, or None when the stats cannot be read."""
        try:
            stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines() if line.strip())
        except (OSError, ValueError):
            return None
        if self.version == 1:
            return int(stat.get("nr_throttled", 0)), int(stat.get("throttled_time", 0)) / 1e9
        return int(stat.get("nr_throttled", 0)), int(stat.get("throttled_usec", 0)) / 1e6

    def remove(self) -> None:
        """Remove the cgroup (only an empty one can go: call after the server's processes are reaped)."""
        for _ in range(40):  # the group's last threads may still be exiting
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)


def preexec(cores: list[int] | None, cgroup: CpuCgroup | None) -> Callable[[], None] | None:
    """A preexec_fn that pins the child to CORES and puts it in CGROUP, before it runs anything."""
    pin = pin_to(cores)
    if cgroup is None:
        return pin

    def apply() -> None:
        if pin is not None:
            pin()
        cgroup.join()

    return apply
