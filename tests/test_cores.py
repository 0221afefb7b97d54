"""Disjoint cores for the server and the load generator where the host has enough; CPU allowances."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from autotune.cores import pin_to, schedulable_cores
from autotune.cpulimit import CFS_PERIOD_US, check_cpus, plan_cpus
from autotune.errors import AutotuneError


def test_small_hosts_share_cores_and_say_so():
    for cores in ([0, 1], [0, 1, 2]):
        plan = plan_cpus(0, cores)
        assert plan.server_cores == cores and plan.client_cores == [] and plan.quota_us is None


def test_four_or_more_cores_split_one_off_for_the_generator():
    plan = plan_cpus(0, [0, 1, 2, 3])
    assert (plan.server_cores, plan.client_cores) == ([0, 1, 2], [3])
    plan = plan_cpus(0, list(range(16)))
    assert set(plan.server_cores).isdisjoint(plan.client_cores) and len(plan.server_cores) == 15
    assert plan.allocated == 15


def test_a_whole_allowance_is_a_core_set_and_leaves_the_rest_to_the_generator():
    plan = plan_cpus(1, [0, 1])
    assert (plan.server_cores, plan.client_cores, plan.quota_us, plan.allocated) == ([0], [1], None, 1.0)


def test_a_fractional_allowance_adds_a_cfs_quota_on_the_cores_it_rounds_up_to():
    plan = plan_cpus(1.5, [0, 1, 2, 3])
    assert plan.server_cores == [0, 1] and plan.client_cores == [2, 3]
    assert plan.quota_us == round(1.5 * CFS_PERIOD_US) and plan.allocated == 1.5
    half = plan_cpus(0.5, [4, 5])
    assert half.server_cores == [4] and half.quota_us == CFS_PERIOD_US // 2


@pytest.mark.parametrize(("cpus", "words"), [(3, "more than the 2 cores"), (0.05, "below the smallest")])
def test_an_allowance_the_host_cannot_give_is_a_one_line_error(cpus, words):
    with pytest.raises(AutotuneError, match=words) as caught:
        check_cpus(cpus, 2)
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(len(schedulable_cores()) < 2, reason="needs 2+ cores to pin a child to a subset")
def test_a_pinned_child_and_the_threads_it_starts_run_only_on_its_cores():
    core = schedulable_cores()[-1]
    code = (
        "import os, threading; "
        "t = threading.Thread(target=lambda: print(sorted(os.sched_getaffinity(0)))); t.start(); t.join()"
    )
    out = subprocess.run([sys.executable, "-c", code], preexec_fn=pin_to([core]), capture_output=True, text=True)
    assert out.stdout.strip() == str([core])
    assert sorted(os.sched_getaffinity(0)) == schedulable_cores()  # the parent is untouched
