"""The `cpus` knob: a server runs within its CPU allowance, and says what it was given and what it cost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autotune.cores import schedulable_cores
from autotune.cpulimit import find_cgroup_parent, quota_problem
from tests.conftest import SHORT, autotune

needs_two_cores = pytest.mark.skipif(len(schedulable_cores()) < 2, reason="an allowance below the host needs 2+ cores")
needs_quota = pytest.mark.skipif(quota_problem() is not None, reason=f"no CFS quota here: {quota_problem()}")


def _bench(*args: str) -> dict:
    out = autotune("bench", "--model", "tiny", "--concurrency", "4", *SHORT, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _our_cgroups() -> list[Path]:
    parent = find_cgroup_parent()
    return [] if isinstance(parent, str) else sorted(parent.path.glob("autotune-*"))


@pytest.mark.slow
@needs_two_cores
def test_a_whole_core_allowance_pins_the_server_to_one_core_and_frees_the_other_for_the_generator(autotune_home):
    result = _bench("--set", "cpus=1")
    assert result["cpu_cores"] <= 1.1
    assert result["cpus_allocated"] == 1.0 and result["cores_shared"] is False
    assert result["cost_per_1k_requests"] == pytest.approx(1.0 * 1000 / result["throughput_rps"] / 3600, rel=0.01)


@pytest.mark.slow
@needs_two_cores
@needs_quota
def test_a_fractional_allowance_is_a_cfs_quota_and_its_throttling_is_reported(autotune_home):
    before = _our_cgroups()
    result = _bench("--set", "cpus=0.5")
    assert result["cpu_cores"] <= 0.6
    assert result["cpus_allocated"] == 0.5
    point = next(lv for lv in result["levels"] if lv["concurrency"] == 4)
    assert point["throttled_periods"] > 0 and point["throttled_s"] > 0
    assert _our_cgroups() == before  # the server's cgroup went with it


def test_an_allowance_the_host_cannot_give_is_a_one_line_error(autotune_home):
    too_many = len(schedulable_cores()) + 1
    out = autotune("bench", "--model", "tiny", "--set", f"cpus={too_many}")
    assert out.returncode == 1
    assert f"cpus: {too_many} is more than" in out.stderr and "Traceback" not in out.stderr


def test_docker_dry_run_passes_the_allowance_to_docker(autotune_home):
    out = autotune("bench", "--model", "tiny", "--backend", "docker", "--dry-run", "--set", "cpus=1.5")
    assert out.returncode == 0, out.stderr
    assert "--cpus=1.5" in out.stdout.split()
