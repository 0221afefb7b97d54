"""What keeps a daemon bounded over months: its log rotates by size, and old window detail is pruned between jobs."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path

from autotune.daemon import Daemon, DaemonOptions, _setup_logging, log
from autotune.states import JobState
from autotune.store import Store
from autotune.store.schema import ScheduleRow, utcnow
from tests.stored_jobs import add_host, add_job, add_model, add_trial, set_job


def test_the_daemon_log_rotates_at_its_size_and_keeps_a_bounded_number_of_old_files(tmp_path: Path):
    path = tmp_path / "logs" / "daemon.log"
    before = list(log.handlers)
    _setup_logging(path, max_bytes=2000, backups=2)
    try:
        for i in range(400):
            log.info("job %d claimed and measured, a line of about sixty characters", i)
    finally:
        for handler in [h for h in log.handlers if h not in before]:
            handler.close()
            log.removeHandler(handler)
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["daemon.log", "daemon.log.1", "daemon.log.2"]
    assert all((path.parent / f).stat().st_size <= 2000 for f in files)
    assert "job 399 claimed" in path.read_text()  # the newest lines are in the live file


def test_between_jobs_the_daemon_prunes_only_when_asked(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'daemon.db'}"
    store = Store(url)
    job_id = add_job(store, add_model(store), "bounds-host")
    add_trial(store, job_id, 0)
    store.finish_trial(job_id, 0, levels=[{"throughput_rps": 1.0, "windows": [{"t": 1}] * 7}])
    long_ago = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=60)
    set_job(store, job_id, state=JobState.done, finished_at=long_ago)

    def windows() -> int:
        return len(store.job(job_id).trials[0].levels[0]["windows"])

    for days, left in ((None, 7), (90.0, 7), (30.0, 0)):
        Daemon(DaemonOptions(prune_days=days), url).prune()
        assert windows() == left, days
    assert logging.getLogger("autotune.daemon") is log


def test_a_schedule_whose_previous_retune_never_started_skips_its_run_and_says_why(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'daemon.db'}"
    daemon = Daemon(DaemonOptions(), url)
    store = daemon.store
    waiting = add_job(store, add_model(store), daemon.host_fp)  # queued behind a gate that stayed closed
    schedule_id = store.add_schedule("tiny", "*/10 * * * *", add_host(store, daemon.host_fp), 2, None)
    with store._tx() as s:
        row = s.get(ScheduleRow, schedule_id)
        row.next_run_at, row.last_job_id = utcnow() - dt.timedelta(seconds=30), waiting
    daemon.gate.state, daemon.gate.reason = "closed", "foreign CPU load 1.90 cores > 0.5"

    daemon._fire_schedules()

    (schedule,) = store.schedules()
    assert [j.id for j in store.jobs()] == [waiting], "no second retune queued behind the first"
    assert schedule["skipped_runs"] == 1 and schedule["next_run_at"] > utcnow().isoformat()
    assert schedule["last_skip_reason"] == (
        f"its previous retune (job {waiting}) has not started: the gate is closed (foreign CPU load 1.90 cores > 0.5)"
    )
    assert 25 <= schedule["late_s"] <= 60


def test_a_gate_that_stays_closed_says_so_once_per_cause_not_once_a_reading(monkeypatch):
    from autotune.gate import GateReading, GateSettings, ResourceGate

    gate = ResourceGate(GateSettings(sample_s=0.001, quiet_s=0.0, check_gpu=True))
    stop = threading.Event()
    readings = iter(
        [GateReading(1.0 + i / 100, 0) for i in range(50)]  # a foreign load whose figure moves every reading
        + [GateReading(0.0, 2)] * 5  # another cause: foreign GPU work
        + [GateReading(0.0, 0)]
    )
    monkeypatch.setattr(gate, "read", lambda: next(readings))
    said: list[str] = []
    assert gate.wait_open(stop, said.append) is True
    assert said == ["foreign CPU load 1.01 cores > 0.5", "2 foreign process(es) on the GPU"]


def test_a_gate_opens_once_its_readings_span_quiet_s_counting_the_interval_each_one_covers(monkeypatch):
    import time

    from autotune.gate import GateReading, GateSettings, ResourceGate

    gate = ResourceGate(GateSettings(sample_s=0.05, quiet_s=0.1, check_gpu=False))
    readings: list[float] = []

    def read() -> GateReading:
        gate._t = time.monotonic()  # as the real reading: the next one covers the host from now
        readings.append(gate._t)
        return GateReading(0.0, 0)

    monkeypatch.setattr(gate, "read", read)
    assert gate.wait_open(threading.Event()) is True
    # The first reading starts the clock; two quiet ones of 0.05 s cover 0.1 s: no third reading to wait for.
    assert len(readings) == 3 and readings[-1] - readings[0] >= 0.1


def test_a_status_file_that_cannot_be_written_is_one_warning_not_a_dead_daemon(tmp_path: Path, monkeypatch, caplog):
    import json

    from autotune import daemon_control

    path = tmp_path / "not-yet" / "daemon.json"  # its directory missing: every write fails as a full disk would
    monkeypatch.setattr(daemon_control, "status_path", lambda _url: path)
    with caplog.at_level(logging.WARNING, logger="autotune.daemon"):
        status = daemon_control.StatusFile("sqlite:///soak.db", "2026-12-04T22:00:00Z", 0)
        status.update(job=1)
        status.update(job=2)
    assert status.failed and [r.getMessage() for r in caplog.records] == [
        f"status file {path} not written: No such file or directory"
    ]
    path.parent.mkdir()
    status.update(job=3)
    assert status.failed is None and json.loads(path.read_text())["job"] == 3


def test_a_log_line_the_disk_cannot_take_is_one_line_on_stderr_not_a_traceback(tmp_path: Path, capsys):
    import contextlib

    before = list(log.handlers)
    _setup_logging(tmp_path / "logs" / "daemon.log", max_bytes=10**6, backups=1)
    (handler,) = [h for h in log.handlers if h not in before]
    try:
        handler.stream = open("/dev/full", "w")  # every write to it fails: ENOSPC
        log.info("job 7 claimed")
    finally:
        with contextlib.suppress(OSError):
            handler.close()
        log.removeHandler(handler)
    err = capsys.readouterr().err
    assert err.startswith("daemon log not written (No space left on device): ") and "Traceback" not in err
    assert err.endswith("INFO job 7 claimed\n") and err.count("\n") == 1
