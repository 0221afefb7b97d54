"""Retention: old finished jobs lose their window-by-window detail, and nothing anyone reads again."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from autotune.states import JobState
from autotune.store import Store
from autotune.store.retention import Retention
from autotune.store.schema import TrialRow
from tests.conftest import autotune
from tests.stored_jobs import add_job, add_model, add_trial, set_job

WINDOWS = 40


def _levels() -> list[dict]:
    window = {"t": 1.0, "throughput_rps": 10.0, "latency_p99_ms": 5.0, "padding": "x" * 2000}
    return [{"mode": "closed", "concurrency": 8, "throughput_rps": 10.0, "windows": [window] * WINDOWS}]


def _job(store: Store, model_id: int, finished_days_ago: float | None, state: JobState = JobState.done) -> int:
    job_id = add_job(store, model_id, "retention-host")
    for n in range(3):
        add_trial(store, job_id, n, rps=10.0 + n)
        store.finish_trial(job_id, n, levels=_levels(), server_log_tail="server said things")
    if finished_days_ago is None:
        set_job(store, job_id, state=state)
    else:
        ago = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=finished_days_ago)
        set_job(store, job_id, state=state, finished_at=ago)
    return job_id


def _trials(store: Store, job_id: int) -> list[TrialRow]:
    with store._tx() as s:
        rows = s.query(TrialRow).filter_by(job_id=job_id).order_by(TrialRow.number).all()
        s.expunge_all()
        return rows


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'retention.db'}"


def test_old_finished_jobs_lose_windows_and_logs_but_keep_summaries_metrics_and_objectives(db):
    store = Store(db)
    model = add_model(store)
    old, recent, running = _job(store, model, 40), _job(store, model, 2), _job(store, model, None, JobState.running)
    before = {t.number: (t.metrics, t.objective_values, t.config) for t in _trials(store, old)}

    done = Retention(db).prune(keep_days=30)

    assert (done.jobs, done.trials, done.windows, done.log_tails) == (1, 3, 3 * WINDOWS, 3)
    for t in _trials(store, old):
        assert t.levels[0]["windows"] == [] and t.levels[0]["throughput_rps"] == 10.0
        assert t.server_log_tail is None
        assert (t.metrics, t.objective_values, t.config) == before[t.number]
    for job in (recent, running):
        assert all(len(t.levels[0]["windows"]) == WINDOWS and t.server_log_tail for t in _trials(store, job))


def test_a_dry_run_counts_what_would_go_and_changes_nothing(db):
    store = Store(db)
    old = _job(store, add_model(store), 40)
    done = Retention(db).prune(keep_days=30, dry_run=True)
    assert done.dry_run and done.windows == 3 * WINDOWS
    assert all(len(t.levels[0]["windows"]) == WINDOWS for t in _trials(store, old))
    assert Retention(db).prune(keep_days=30).windows == 3 * WINDOWS  # still there to prune


def test_pruning_twice_finds_nothing_the_second_time_and_vacuum_shrinks_the_file(db):
    store = Store(db)
    model = add_model(store)
    for _ in range(5):
        _job(store, model, 40)
    first = Retention(db).prune(keep_days=30, vacuum=True)
    assert first.bytes_before is not None and first.bytes_after is not None
    assert first.bytes_after < first.bytes_before / 2, first
    assert Retention(db).prune(keep_days=30).trials == 0


def test_db_prune_on_the_command_line_reports_what_it_dropped(db):
    store = Store(db)
    _job(store, add_model(store), 40)
    human = autotune("db", "prune", "--keep-days", "30", "--dry-run", db=db)
    assert human.returncode == 0, human.stderr
    assert f"would drop {3 * WINDOWS} windows and 3 server log tails from 3 trials of 1 jobs" in human.stdout
    res = autotune("db", "prune", "--keep-days", "30", "--json", db=db)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["windows"] == 3 * WINDOWS
    bad = autotune("db", "prune", "--keep-days", "-1", db=db)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
