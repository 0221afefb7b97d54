"""Leftovers of killed processes: trial directories and cgroups are swept only when their owner is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autotune import leftovers
from autotune.cpulimit import CpuCgroup, find_cgroup_parent


def _dir(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir()
    (path / "server.log").write_text("a trial's files")
    return path


def test_a_dead_owners_trial_directory_goes_and_a_living_owners_stays(tmp_path: Path):
    mine = _dir(tmp_path, "autotune-trial-mine")
    leftovers.claim(mine)
    dead = _dir(tmp_path, "autotune-trial-dead")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    (dead / leftovers.OWNER_FILE).write_text(f"{child.pid} {time.time() - 5:.3f}\n")  # that pid is gone
    reused = _dir(tmp_path, "autotune-target-reused")
    (reused / leftovers.OWNER_FILE).write_text(f"{os.getpid()} 12345.000\n")  # our pid, another start time
    other = _dir(tmp_path, "someone-elses-dir")
    assert sorted(p.name for p in leftovers.sweep_dirs(tmp_path)) == ["autotune-target-reused", "autotune-trial-dead"]
    assert mine.exists() and other.exists() and not dead.exists() and not reused.exists()


def test_a_directory_with_no_owner_is_swept_only_when_old(tmp_path: Path):
    fresh, old = _dir(tmp_path, "autotune-trial-fresh"), _dir(tmp_path, "autotune-trial-old")
    hours_ago = time.time() - leftovers.UNOWNED_AFTER_S - 60
    os.utime(old, (hours_ago, hours_ago))
    assert leftovers.sweep_dirs(tmp_path) == [old]
    assert fresh.exists()


@pytest.mark.skipif(isinstance(find_cgroup_parent(), str), reason="no writable cgroup cpu controller on this host")
def test_an_empty_old_cgroup_is_swept_and_a_young_or_busy_one_is_not(monkeypatch):
    young, old = CpuCgroup(50_000), CpuCgroup(50_000)
    try:
        assert leftovers.sweep_cgroups() == []  # both younger than the grace period
        monkeypatch.setattr(leftovers, "CGROUP_GRACE_S", 0.0)
        busy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], preexec_fn=young.join)
        try:
            assert leftovers.sweep_cgroups() == [old.path]
            assert young.path.exists() and not old.path.exists()
        finally:
            busy.kill()
            busy.wait()
    finally:
        young.remove()
        old.remove()


def test_a_server_still_running_from_a_dead_owners_directory_is_killed_with_it(tmp_path: Path):
    dead = _dir(tmp_path, "autotune-trial-orphan")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (dead / leftovers.OWNER_FILE).write_text(f"{gone.pid} {time.time() - 5:.3f}\n")
    # As a confirmation round's server is started: its own session, its model under the trial directory.
    server = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", f"--model_base_path={dead}/model"],
        start_new_session=True,
    )
    try:
        assert leftovers.sweep_dirs(tmp_path) == [dead]
        assert server.wait(10) == -9 and not dead.exists()
    finally:
        server.kill()
