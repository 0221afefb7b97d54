"""The store's contract, held against every database it supports: SQLite here, PostgreSQL where installed.

One suite, as Optuna runs one storage suite against every backend: whatever a daemon relies on (a job
claimed exactly once, heartbeats judged on the database's clock, cancels, hand-backs, the budget count,
which job a command means on a shared database, schedules fired once) must hold on both.
"""

from __future__ import annotations

import datetime as dt
import sys

import pytest
from sqlalchemy import select

from autotune.errors import AutotuneError
from autotune.states import JobState, TrialState, Trigger
from autotune.store import Store
from autotune.store.db import db_now
from tests.stored_jobs import add_host, add_job, add_trial, set_job

HERE, THERE = "fp-this-host", "fp-other-host"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'contract.db'}")
    return Store(request.getfixturevalue("postgres_cluster")())


@pytest.fixture
def model_id(store, tiny_model) -> int:
    return store.model(tiny_model)


def test_a_queued_job_is_claimed_once_and_only_by_its_own_host(store, model_id):
    first, second = add_job(store, model_id, HERE), add_job(store, model_id, HERE)
    add_job(store, model_id, THERE)
    other = Store(store.url)  # a second daemon on the same database
    claims = [store.claim_next(HERE), other.claim_next(HERE), store.claim_next(HERE)]
    assert claims == [first, second, None]
    assert store.job(first).state == JobState.running and store.job(first).worker


def test_heartbeats_are_judged_on_the_database_clock_not_the_hosts(store, model_id, monkeypatch):
    job_id = add_job(store, model_id, HERE)
    store.claim_next(HERE)
    set_job(store, job_id, worker="another-host:4242")  # the worker is a daemon on another host
    store.begin_trial(job_id, 0, {})

    # That host's clock runs ten minutes late: whatever autotune reads as "now" there is ten minutes behind.
    late = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=10)
    for module in [m for name, m in sys.modules.items() if name.startswith("autotune.store")]:
        if hasattr(module, "utcnow"):
            monkeypatch.setattr(module, "utcnow", lambda: late)
    assert store.heartbeat(job_id) is False
    monkeypatch.undo()

    assert store.stale_jobs(HERE, stale_after_s=120) == [], "a live worker with a late clock is not taken back"
    with store._tx() as s:
        long_ago = db_now(s) - dt.timedelta(seconds=300)
    set_job(store, job_id, heartbeat_at=long_ago)
    (orphan,) = store.stale_jobs(HERE, stale_after_s=120)
    assert (orphan.job_id, orphan.trial, orphan.server_pid) == (job_id, 0, None)
    job = store.job(job_id)
    assert job.state == JobState.queued and job.worker is None
    assert [t.state for t in job.trials] == [TrialState.interrupted]


def test_a_silent_job_of_another_hosts_hardware_is_left_to_that_hardware(store, model_id):
    job_id = add_job(store, model_id, THERE)
    store.claim_next(THERE)
    with store._tx() as s:
        long_ago = db_now(s) - dt.timedelta(seconds=300)
    set_job(store, job_id, worker="another-host:4242", heartbeat_at=long_ago)
    assert store.stale_jobs(HERE, stale_after_s=120) == []
    assert store.job(job_id).state == JobState.running


def test_cancel_ends_a_queued_job_now_and_flags_a_running_one_for_its_heartbeat(store, model_id):
    queued, running = add_job(store, model_id, HERE), add_job(store, model_id, HERE, JobState.running)
    assert store.cancel(queued) == JobState.cancelled
    assert store.job(queued).state == JobState.cancelled
    assert store.heartbeat(running) is False
    assert store.cancel(running) == JobState.running
    assert store.heartbeat(running) is True, "the worker learns of the cancel at its next heartbeat"
    assert store.cancel(queued) == JobState.cancelled  # idempotent
    with pytest.raises(LookupError):
        store.cancel(999_999)


def test_the_budget_counts_complete_and_failed_trials_and_an_interrupted_one_is_redone(store, model_id):
    job_id = add_job(store, model_id, HERE, JobState.running)
    add_trial(store, job_id, 0, TrialState.complete, rps=10, p99=5)
    add_trial(store, job_id, 1, TrialState.failed)
    add_trial(store, job_id, 2, TrialState.interrupted)
    store.begin_trial(job_id, 3, {})
    assert store.trial_count(job_id) == 2
    assert [TrialState(s).counts_against_budget for s in TrialState] == [False, True, True, False]

    assert store.finish_job(job_id, JobState.queued) == [], "handed back: no front frozen yet"
    job = store.job(job_id)
    assert job.state == JobState.queued and job.trials[3].state == TrialState.interrupted

    front = store.finish_job(job_id, JobState.done)
    assert [e["trial"] for e in front] == [0]
    assert store.job_front(store.job(job_id)) == front
    assert store.job(job_id).state == JobState.done


def test_commands_pick_this_hosts_latest_job_and_another_hosts_only_by_id(store, model_id, tiny_model):
    mine = add_job(store, model_id, HERE, JobState.running)
    add_trial(store, mine, 0, TrialState.complete)
    theirs = add_job(store, model_id, THERE, JobState.running)  # newer, on other hardware (a GPU host, say)
    add_trial(store, theirs, 0, TrialState.complete)
    name = tiny_model.name

    assert store.pick_job(name, None, HERE).id == mine
    assert store.pick_job(name, None, THERE).id == theirs
    assert store.pick_job(None, theirs, HERE).id == theirs, "an explicit id may name any host's job"
    with pytest.raises(AutotuneError, match=f"not been tuned on this host; jobs from other hosts: {mine}"):
        store.pick_job(name, None, "fp-a-third-host")
    with pytest.raises(AutotuneError, match="not been tuned yet"):
        store.pick_job("never-tuned", None, HERE)
    with pytest.raises(AutotuneError, match="does not exist"):
        store.pick_job(None, 999_999, HERE)
    with pytest.raises(AutotuneError, match="tuned model"):
        store.pick_job("some-other-model", mine, HERE)


def test_a_new_job_warm_starts_from_its_hosts_previous_front_and_a_retune_from_any_host(store, model_id):
    earlier = add_job(store, model_id, HERE, JobState.running)
    add_trial(store, earlier, 0, TrialState.complete)
    store.finish_job(earlier, JobState.done)
    elsewhere = add_job(store, model_id, THERE, JobState.running)
    add_trial(store, elsewhere, 0, TrialState.complete, rps=99)
    store.finish_job(elsewhere, JobState.done)
    new = store.job(add_job(store, model_id, HERE))

    previous = store.previous_front(new)
    assert previous is not None and previous.job.id == earlier and previous.entries[0]["trial"] == 0
    assert store.previous_front(new, any_host=Trigger.retune.retunes).job.id == elsewhere


def test_a_due_schedule_fires_once_across_daemons_and_remembers_how_late_and_what_it_skipped(store, model_id):
    host_id = add_host(store, HERE)
    schedule_id = store.add_schedule("tiny", "*/5 * * * *", host_id, 2, None)
    assert store.claim_due(HERE) == []  # not due until its first minute
    with store._tx() as s:
        from autotune.store.schema import ScheduleRow

        s.execute(select(ScheduleRow)).scalars().one().next_run_at = db_now(s) - dt.timedelta(minutes=1)
    fired = store.claim_due(HERE) + Store(store.url).claim_due(HERE) + store.claim_due(THERE)
    assert [r.id for r in fired] == [schedule_id]
    store.fired(schedule_id, 7)
    (row,) = store.schedules()
    assert row["last_job_id"] == 7 and row["host_fingerprint"] == HERE
    assert row["skipped_runs"] == 0 and 55 <= row["late_s"] <= 120, "fired about a minute after it was due"
    store.skipped(schedule_id, "its previous retune (job 7) has not started: the gate is closed (load)")
    (row,) = store.schedules()
    assert row["skipped_runs"] == 1 and "job 7" in row["last_skip_reason"]
    store.remove_schedule(schedule_id)
    assert store.schedules() == []
    with pytest.raises(AutotuneError, match="no schedule"):
        store.remove_schedule(schedule_id)


def test_pruning_drops_old_finished_jobs_windows_on_the_database_clock(store):
    from autotune.store.retention import Retention
    from tests.stored_jobs import add_model

    model = add_model(store, "pruned")
    old, fresh = add_job(store, model, HERE), add_job(store, model, HERE)
    for job_id in (old, fresh):
        add_trial(store, job_id, 0)
        store.finish_trial(job_id, 0, levels=[{"throughput_rps": 10.0, "windows": [{"t": 1}] * 5}])
    with store._tx() as s:
        now = db_now(s)
    set_job(store, old, state=JobState.done, finished_at=now - dt.timedelta(days=8))
    set_job(store, fresh, state=JobState.done, finished_at=now - dt.timedelta(days=6))
    done = Retention(store.url).prune(keep_days=7)
    assert (done.jobs, done.trials, done.windows) == (1, 1, 5)
    assert Retention(store.url).prune(keep_days=5).windows == 5  # the fresh one's turn


def test_a_job_still_marked_as_an_idle_daemons_own_goes_back_to_the_queue(store, model_id):
    # The daemon could not store the job's end (its store was unreachable then); between jobs it runs none.
    job_id = add_job(store, model_id, HERE)
    store.claim_next(HERE)
    set_job(store, job_id, worker="a-host:4242")
    store.begin_trial(job_id, 0, {})
    store.heartbeat(job_id)
    assert store.stale_jobs(HERE, stale_after_s=120) == [], "a live worker's job stays its own"
    orphans = store.stale_jobs(HERE, stale_after_s=120, idle_worker="a-host:4242")
    assert [(o.job_id, o.trial) for o in orphans] == [(job_id, 0)]
    assert store.job(job_id).state == JobState.queued


def test_a_job_handed_back_between_trials_is_reported_with_no_trial(store, model_id):
    # Nothing was running, yet the daemon must still say that it took the job back.
    job_id = add_job(store, model_id, HERE)
    store.claim_next(HERE)
    set_job(store, job_id, worker="a-host:4242")
    orphans = store.stale_jobs(HERE, stale_after_s=120, idle_worker="a-host:4242")
    assert [(o.job_id, o.trial, o.server_pid) for o in orphans] == [(job_id, None, None)]
    assert store.job(job_id).state == JobState.queued


def test_a_stored_job_reads_back_typed_even_with_fields_this_version_no_longer_has(store, model_id):
    from tests.stored_jobs import stored_study

    job_id = add_job(store, model_id, HERE, settings={"concurrency": 8, "protocol": "grpc"})
    # A job an older (or newer) autotune stored: a field since dropped, on both the study and the settings.
    set_job(
        store,
        job_id,
        study={**stored_study(slo_p99_ms=250.0, signature="predict"), "dropped_knob": 1},
        settings={"concurrency": 8, "protocol": "grpc", "dropped_setting": True},
    )
    job = store.job(job_id)
    assert (job.spec.slo_p99_ms, job.spec.signature, job.spec.model) == (250.0, "predict", "tiny")
    assert (job.measure_settings.concurrency, job.measure_settings.protocol) == (8, "grpc")
    assert job.measure_settings.window_s > 0  # an absent field takes its default
