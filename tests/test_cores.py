"""Disjoint cores for the server and the load generator where the host has enough."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from autotune.cores import pin_to, schedulable_cores, split_cores


def test_small_hosts_share_cores_and_say_so():
    assert split_cores([0, 1]) is None
    assert split_cores([0, 1, 2]) is None


def test_four_or_more_cores_split_one_off_for_the_generator():
    assert split_cores([0, 1, 2, 3]) == ([0, 1, 2], [3])
    server, client = split_cores(list(range(16)))  # type: ignore[misc]
    assert set(server).isdisjoint(client) and len(server) + len(client) == 16


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
