"""What a killed process leaves behind, swept when its owner is gone: trial directories and per-server cgroups.

Every exit path of a trial removes its own (TemporaryDirectory, CpuCgroup.remove); only kill -9 or a power cut
skips that. A trial directory names its owner (pid and start time, so a reused pid is not mistaken for it);
a cgroup is empty once its server died. The daemon sweeps both at start and while it runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import psutil

from autotune.cpulimit import find_cgroup_parent
from autotune.procs import kill_group_of

DIR_PREFIXES = ("autotune-trial-", "autotune-target-")
OWNER_FILE = ".owner"
# A directory from before owners were written is left alone this long: no trial runs for six hours.
UNOWNED_AFTER_S = 6 * 3600.0
# A cgroup is made a moment before its server joins it: never sweep one younger than this.
CGROUP_GRACE_S = 60.0


def claim(directory: Path) -> None:
    """Mark DIRECTORY as this process's (pid and start time)."""
    me = psutil.Process()
    (directory / OWNER_FILE).write_text(f"{me.pid} {me.create_time():.3f}\n")


def _owner_alive(directory: Path, now: float) -> bool:
    try:
        pid_text, started = (directory / OWNER_FILE).read_text().split()
    except FileNotFoundError:
        return now - directory.stat().st_mtime < UNOWNED_AFTER_S
    except (OSError, ValueError):
        return False  # a torn owner file: its writer died writing it
    try:
        return abs(psutil.Process(int(pid_text)).create_time() - float(started)) < 1.0
    except (psutil.Error, ValueError):
        return False


def _kill_users(directory: Path) -> None:
    """Kill what still runs from DIRECTORY (its owner died under it): a server whose trial was not recorded as
    one (a confirmation round's) has no pid in the store, but its command line names its trial directory."""
    here = str(directory) + os.sep
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid != os.getpid() and here in " ".join(proc.info["cmdline"] or []):
            kill_group_of(proc.pid)  # servers and generators lead their own group


def sweep_dirs(root: Path | None = None) -> list[Path]:
    """Remove trial directories under ROOT (the temp dir) whose owner is gone; the removed ones."""
    root = root or Path(tempfile.gettempdir())
    now, removed = time.time(), []
    for prefix in DIR_PREFIXES:
        for directory in root.glob(f"{prefix}*"):
            try:
                if directory.is_dir() and not directory.is_symlink() and not _owner_alive(directory, now):
                    _kill_users(directory)
                    shutil.rmtree(directory)
                    removed.append(directory)
            except OSError:
                continue  # another sweeper got there first, or it is not ours to remove
    return removed


def sweep_cgroups(parent: Path | None = None) -> list[Path]:
    """Remove empty per-server cgroups (autotune-*) older than the grace period; the removed ones."""
    if parent is None:
        found = find_cgroup_parent()
        if isinstance(found, str):
            return []
        parent = found.path
    now, removed = time.time(), []
    for group in parent.glob("autotune-*"):
        try:
            if now - group.stat().st_ctime < CGROUP_GRACE_S or (group / "cgroup.procs").read_text().strip():
                continue
            os.rmdir(group)
            removed.append(group)
        except OSError:
            continue
    return removed
