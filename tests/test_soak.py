"""The soak's figures (benchmarks/soak.py): what RELIABILITY's claims are computed from, on data made to order.

The soak itself is a benchmark (hours) and CI's five-minute run; here its arithmetic is held to what a reader
of docs/reliability.md would take it to mean.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import soak  # noqa: E402

MIB = 2**20
TARGETS = {**soak.FULL, "faults": 1}  # one fault is injected below, not twenty


def run_records(mib_per_job: float, late_s: float = 5.0, trial_dirs_left: int = 0) -> list[dict[str, Any]]:
    """Two daemon lives (a restart between them), 30 jobs, RSS growing MIB_PER_JOB with 2 MiB of noise."""
    rng = random.Random(7)
    recs: list[dict[str, Any]] = [{"kind": "meta", "t": 0, "plan": [{"at_s": 1, "fault": "cpu_hog"}]}]
    recs.append({"kind": "begin", "t": 0.0})
    t, jobs = 0.0, 0
    for pid, start_mib, n in ((100, 8.0, 15), (200, 8.0, 15)):
        base = 170.0
        recs.append(sample(t, pid, start_mib, jobs, late_s, 0))  # just started: imports not done
        for _ in range(n):
            jobs += 1
            for _ in range(4):
                t += 30.0
                rss = base + mib_per_job * (jobs - (0 if pid == 100 else 15)) + rng.gauss(0, 2.0)
                recs.append(sample(t, pid, rss, jobs, late_s, trial_dirs_left))
    recs.append({"kind": "fault", "t": 1.0, "fault": "cpu_hog", "injected": True})
    recs.append(
        {
            "kind": "end",
            "t": 7300.0,
            "restarts": 1,
            "processes_left": [],
            "running_trials": [],
            "jobs": [{"id": i, "state": "done", "error": None} for i in range(jobs)],
            "trial_states": {"complete": 4 * jobs},
            "failure_reasons": {},
            "logs": {"tracebacks": 0},
            "trial_dirs": trial_dirs_left,
            "cgroups": 0,
            "tmp_other": 0,
        }
    )
    return recs


def sample(t: float, pid: int, rss_mib: float, jobs: int, late_s: float, dirs: int) -> dict[str, Any]:
    due = "2026-12-04 21:20:00"
    fired = f"2026-12-04 21:{20 + int(late_s) // 60:02d}:{int(late_s) % 60:02d}"
    return {
        "kind": "sample",
        "t": t,
        "daemon_pid": pid,
        "rss": int(rss_mib * MIB),
        "fds": 20,
        "threads": 5,
        "zombies": 0,
        "orphans": [],
        "db_bytes": 100_000 + 1000 * jobs,
        "jobs": {"done": jobs},
        "trials": {"complete": 4 * jobs},
        "schedules": [{"id": 1, "due": due, "fired": fired, "skipped": 0}],
        "trial_dirs": dirs,
    }


def test_a_daemon_whose_memory_is_flat_per_job_meets_the_target_and_its_interval_holds_zero():
    fig = soak.figures(run_records(mib_per_job=0.0))
    slope = fig["rss_slope"]
    assert slope["daemons"] == 2 and slope["ci_mib"][0] <= 0 <= slope["ci_mib"][1]
    assert soak.problems(fig, TARGETS) == []


def test_a_daemon_that_grows_a_few_mib_per_job_is_caught_even_across_restarts():
    fig = soak.figures(run_records(mib_per_job=3.0))
    assert 2.5 < fig["rss_slope"]["slope_mib"] < 3.5
    assert any("RSS grows" in why for why in soak.problems(fig, TARGETS))


def test_growth_while_a_daemon_imports_before_its_first_job_is_not_counted_as_growth_per_job():
    # Each life starts at 8 MiB and sits at 170 MiB once its first job is done: a slope over all samples
    # would call that growth, and a restart would reset it.
    assert abs(soak.figures(run_records(mib_per_job=0.0))["rss_slope"]["slope_mib"]) < 0.5


def test_a_late_firing_and_a_trial_directory_left_behind_are_each_a_missed_target():
    late = soak.problems(soak.figures(run_records(0.0, late_s=75.0)), TARGETS)
    assert late == ["1 firings more than 60 s late"]
    left = soak.problems(soak.figures(run_records(0.0, trial_dirs_left=1)), TARGETS)
    assert left == ["1 trial directories left"]


def test_a_slope_counts_jobs_not_samples_and_skips_each_lifes_warm_up_jobs():
    # Twenty samples taken during one job are one job's evidence; the first WARM_JOBS of a life are not judged.
    fig = soak.figures(run_records(mib_per_job=0.0))
    assert fig["rss_slope"]["samples"] == 2 * (15 - soak.WARM_JOBS + 1)
    assert fig["longest_daemon"]["ci_mib"] is not None


def test_the_fault_plan_stops_the_daemon_only_early_so_that_one_long_life_is_left_to_judge():
    from types import SimpleNamespace

    args = SimpleNamespace(faults=24, daemon_faults=4, minutes=120.0)
    plan = soak.Soak.fault_plan(SimpleNamespace(args=args, rng=random.Random(29), mounted=True))
    kinds = Counter(kind for _, kind in plan)
    assert len(plan) == 24 and kinds["daemon_term"] + kinds["daemon_kill9"] == 4
    assert all(n == 4 for kind, n in kinds.items() if not kind.startswith("daemon_"))
    assert max(at for at, kind in plan if kind.startswith("daemon_")) <= 0.45 * 120 * 60


def test_the_figures_do_not_depend_on_the_order_of_the_data_files_rows():
    # Each life's first sample sets its job count: a shuffled file must give the same figures.
    records = run_records(mib_per_job=1.0)
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    assert soak.figures(shuffled) == soak.figures(records)
