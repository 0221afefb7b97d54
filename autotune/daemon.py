"""`autotune daemon`: one per host and database; claims queued jobs and runs them when the host is quiet.

It recovers on start (stale trials interrupted, orphaned servers killed, jobs
requeued), heartbeats its job, serves Prometheus metrics on 127.0.0.1, fires due
schedules, and on SIGTERM stops the current trial cleanly and hands the job back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
from filelock import FileLock, Timeout

from autotune.daemon_control import StatusFile, lock_path, read_status
from autotune.daemon_options import DaemonOptions
from autotune.daemon_status import Snapshot
from autotune.errors import AutotuneError
from autotune.fingerprint import fingerprint, host_info
from autotune.gate import ResourceGate
from autotune.leftovers import sweep_cgroups, sweep_dirs
from autotune.memtrace import MemoryTrace
from autotune.procs import kill_group_of
from autotune.states import JobState, Trigger
from autotune.store import Store
from autotune.store.db import db_url
from autotune.store.records import worker_id
from autotune.store.schedules import lateness_s
from autotune.store.schema import utcnow

log = logging.getLogger("autotune.daemon")
# How long the loop waits before asking a store that failed again (a lock held too long, a full disk).
STORE_RETRY_S = 10.0
SERVER_MARKERS = ("autotune.servers.local", "autotune-model-server", "tensorflow_model_server", "docker")


class _Metrics:
    """The daemon's Prometheus metrics, on 127.0.0.1 only."""

    def __init__(self, port: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        self.registry = CollectorRegistry()
        self.jobs = Counter(
            "autotune_jobs", "Jobs finished by this daemon, by state.", ["state"], registry=self.registry
        )
        self.trials = Counter("autotune_trials", "Trials measured, by state.", ["state"], registry=self.registry)
        self.goodput = Gauge(
            "autotune_last_goodput_rps", "Goodput of the last feasible trial.", ["model"], registry=self.registry
        )
        self.gate = Gauge("autotune_gate_open", "1 while the resource gate is open.", registry=self.registry)
        self.running = Gauge("autotune_job_running", "1 while a job runs.", registry=self.registry)
        self.gate.set(1)
        try:
            self.server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        except OSError as exc:
            raise AutotuneError(
                f"metrics port {port} on 127.0.0.1 is busy ({exc.strerror}); use --metrics-port"
            ) from None
        self.port = self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()


def kill_orphan(pid: int | None) -> bool:
    """Kill a server left by a dead daemon, if the pid is still one of ours (pids get reused)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return any(m in cmd for m in SERVER_MARKERS) and kill_group_of(pid)  # servers run in their own group


class Heartbeat:
    """While a job runs: mark it alive every few seconds (on the database's clock), with why it waits if it
    does, and notice when a user asked to cancel it."""

    def __init__(self, store: Store, job_id: int, interval_s: float, on_beat: Callable[[], None] | None = None) -> None:
        self.store, self.job_id, self.interval_s, self.on_beat = store, job_id, interval_s, on_beat
        self.cancelled = threading.Event()
        self.waiting: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if self.store.heartbeat(self.job_id, self.waiting):
                    self.cancelled.set()
                if self.on_beat is not None:
                    self.on_beat()
            except AutotuneError as exc:
                log.warning("heartbeat failed: %s", exc)


class Daemon:
    """The worker loop."""

    def __init__(self, opts: DaemonOptions, url: str) -> None:
        self.opts, self.url = opts, url
        self.stop = threading.Event()
        self.interruptible = False
        self.memory: MemoryTrace | None = None  # set in run() under AUTOTUNE_TRACEMALLOC
        self.store = Store(url)
        self.host_fp = fingerprint(host_info())
        self.gate = ResourceGate(opts.gate)
        self.snapshot: Snapshot  # set by run(), with the status file it writes into

    def on_signal(self, signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        self.stop.set()
        if self.interruptible:
            self.interruptible = False
            raise KeyboardInterrupt  # run_trial stops its server; the trial is recorded interrupted

    def prune(self) -> None:
        """The retention policy, between jobs: a failure to prune is logged, never a failed job."""
        days = self.opts.prune_days
        if days is None:
            return
        from autotune.store.retention import Retention

        try:
            done = Retention(self.url).prune(days)
        except AutotuneError as exc:
            log.warning("pruning failed: %s", exc)
            return
        if done.trials:
            log.info(
                "pruned %d windows from %d trials of %d jobs finished before %s",
                done.windows,
                done.trials,
                done.jobs,
                done.cutoff,
            )

    def recover(self) -> None:
        """Requeue jobs whose worker died (here, or silent on another host); kill servers left here."""
        # Called between jobs only: a job still marked as this daemon's is one whose end could not be stored.
        orphans = self.store.stale_jobs(self.host_fp, self.opts.stale_after_s, idle_worker=worker_id())
        for o in orphans:
            killed = kill_orphan(o.server_pid)
            where = "between trials" if o.trial is None else f"trial {o.trial} interrupted"
            log.info("recovered job %d: %s%s", o.job_id, where, " (orphan killed)" if killed else "")
        from autotune.servers.backends import BACKENDS

        for kind in BACKENDS.values():  # servers that outlive their client (containers) are each backend's own
            kind.reap_orphans()
        for swept in (*sweep_dirs(), *sweep_cgroups()):
            log.info("removed %s, left by a process that died", swept)

    def run(self, status: StatusFile, metrics: _Metrics) -> None:
        self.memory = MemoryTrace() if MemoryTrace.wanted() else None
        self.recover()
        self.snapshot = Snapshot(self.store, status, self.url, self.opts.status_every_s)
        self.snapshot.publish()
        # Schedules fire on their own thread: a job that runs for an hour must not make a retune an hour late.
        threading.Thread(target=self._schedule_loop, name="schedules", daemon=True).start()
        recovered_at = time.monotonic()
        while not self.stop.is_set():
            try:
                # Often enough that a host silent for stale_after_s is noticed soon after, not a period later.
                if time.monotonic() - recovered_at > min(self.opts.recover_every_s, self.opts.stale_after_s / 2):
                    # Not only at start: another daemon sharing the database may die while this one runs.
                    self.recover()
                    recovered_at = time.monotonic()
                job_id = self.store.claim_next(self.host_fp)
                if job_id is None:
                    self.snapshot.refresh()
                    self.stop.wait(self.opts.poll_s)
                    continue
            except AutotuneError as exc:
                # A database locked past its timeout, or on a full disk: nothing was claimed; wait and try again.
                log.warning("store unavailable (%s); retrying in %.0f s", exc, STORE_RETRY_S)
                self.stop.wait(STORE_RETRY_S)
                continue
            _DaemonJob(self, job_id, status, metrics).run()
            if self.memory is not None:  # AUTOTUNE_TRACEMALLOC: where memory grew since the first job
                for line in self.memory.after_job():
                    log.info("memory since the first job: %s", line)

    def _schedule_loop(self) -> None:
        while True:
            try:
                self._fire_schedules()
            except AutotuneError as exc:  # a locked or full database: the schedule stays due, tried next poll
                log.warning("schedules not checked: %s", exc)
            if self.stop.wait(self.opts.poll_s):
                return

    def _fire_schedules(self) -> None:
        for row in self.store.claim_due(self.host_fp):
            waiting = self._not_started(row.last_job_id)
            if waiting is not None:
                # Another retune queued behind one that never ran would only pile up; count the run as skipped.
                self.store.skipped(row.id, waiting)
                log.info("schedule %d (%s) skipped its run due at %s: %s", row.id, row.model, row.next_run_at, waiting)
                continue
            try:
                job_id = enqueue_retune(row.model, row.trials, row.minutes, trigger=Trigger.schedule)
                self.store.fired(row.id, job_id)
                late = lateness_s(row.next_run_at, utcnow())
                log.info(
                    "schedule %d fired %.0f s after its time: retune job %d for %s", row.id, late, job_id, row.model
                )
            except AutotuneError as exc:
                log.error("schedule %d (%s) could not enqueue a retune: %s", row.id, row.model, exc)

    def _not_started(self, job_id: int | None) -> str | None:
        """Why the retune JOB_ID, a schedule's previous one, has not started yet, or None when it has (or is gone)."""
        job = self.store.job(job_id) if job_id is not None else None
        if job is None or job.state != JobState.queued:
            return None
        why = f"the gate is closed ({self.gate.reason})" if self.gate.state == "closed" else "another job is running"
        return f"its previous retune (job {job_id}) has not started: {why}"


class _DaemonJob:
    """One claimed job in the daemon: the gate before each trial, the foreign-load check after, metrics, heartbeat."""

    def __init__(self, daemon: Daemon, job_id: int, status: StatusFile, metrics: _Metrics) -> None:
        self.daemon, self.job_id, self.status, self.metrics = daemon, job_id, status, metrics
        # While a trial measures, the heartbeat thread keeps `status`'s job list current (the loop is busy).
        self.beat = Heartbeat(daemon.store, job_id, daemon.opts.heartbeat_s, on_beat=daemon.snapshot.refresh)

    def run(self) -> None:
        from autotune.job import JobControl, execute_job
        from autotune.tuner import TrialHooks

        d = self.daemon
        control = JobControl(
            cancelled=self.beat.cancelled.is_set,
            stopping=d.stop.is_set,
            accept=self._accept,
            before_trial=self._before_trial,
        )
        self.status.update(job=self.job_id)
        d.snapshot.publish()
        self.metrics.running.set(1)
        log.info("job %d claimed", self.job_id)
        try:
            with self.beat:
                result = execute_job(self.job_id, TrialHooks(finished=self._finished, said=self._said), control)
            self.metrics.jobs.labels(result.state).inc()
            log.info("job %d %s after %d trials", self.job_id, result.state, len(result.trials))
            d.prune()
        except KeyboardInterrupt:
            self.metrics.jobs.labels(JobState.cancelled).inc()
            log.info("job %d cancelled", self.job_id)
        except AutotuneError as exc:
            self.metrics.jobs.labels(JobState.failed).inc()
            log.error("job %d failed: %s", self.job_id, exc)
        except Exception:
            self.metrics.jobs.labels(JobState.failed).inc()
            log.exception("job %d failed", self.job_id)
        finally:
            d.interruptible = False
            self.status.update(job=None)
            d.snapshot.publish()
            self.metrics.running.set(0)

    def _said(self, msg: str) -> None:
        log.info("job %d: %s", self.job_id, msg)

    def _on_wait(self, reason: str) -> None:
        self.beat.waiting = f"resource gate closed: {reason}"
        waiting = self.daemon.snapshot.waiting(self.job_id, self.beat.waiting)
        self.status.update(gate="closed", gate_reason=reason, **waiting)
        self.metrics.gate.set(0)
        log.info("job %d waits: %s", self.job_id, reason)

    def _before_trial(self) -> None:
        d = self.daemon
        if d.gate.wait_open(d.stop, self._on_wait):
            self.beat.waiting = None
            self.status.update(gate="open", gate_reason=None, **d.snapshot.waiting(self.job_id, None))
            self.metrics.gate.set(1)
        d.interruptible = not d.stop.is_set()

    def _accept(self, result: Any) -> bool:
        foreign = result.metrics.get("foreign_cores") or 0.0
        if foreign <= self.daemon.opts.gate.max_foreign_cores:
            return True
        log.info("job %d: foreign load %.2f cores during the trial; measuring again", self.job_id, foreign)
        self._before_trial()
        return False

    def _finished(self, t: Any) -> None:
        self.daemon.interruptible = False
        self.daemon.snapshot.publish()
        self.metrics.trials.labels(t.failure_reason if t.values is None else t.state).inc()
        if t.feasible:
            self.metrics.goodput.labels(t.result.model).set(t.goodput)


def enqueue_retune(model: str, trials: int | None, minutes: float | None, trigger: Trigger = Trigger.retune) -> int:
    """Enqueue a retune of MODEL with its study's settings (re-measures the stored Pareto set first)."""
    from autotune.job import enqueue_job, study_settings
    from autotune.models.resolve import served_name
    from autotune.spec import study_for_model

    study = study_for_model(model)
    previous = Store().last_job_settings(served_name(model))
    # Measure exactly as the job being checked for drift did, or the comparison means nothing.
    settings = previous if previous is not None else study_settings(study)
    return enqueue_job(study, trials or study.trials, minutes or study.minutes, settings, trigger=trigger)


def _setup_logging(log_file: Path | None, max_bytes: int, backups: int) -> None:
    handler: logging.Handler
    if log_file is not None:
        from logging.handlers import RotatingFileHandler

        class Log(RotatingFileHandler):
            def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802  (logging's name)
                # A full disk: the line goes to stderr (logs/daemon.out) as one line, not as logging's traceback.
                why = getattr(sys.exc_info()[1], "strerror", None) or "write failed"
                with contextlib.suppress(Exception):
                    sys.stderr.write(f"daemon log not written ({why}): {self.format(record)}\n")

        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = Log(log_file, maxBytes=max_bytes, backupCount=backups)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def run_daemon(opts: DaemonOptions) -> int:
    """Run in the foreground until SIGTERM/SIGINT; a second daemon for the same database refuses."""
    url = db_url()
    lock = FileLock(lock_path(url), timeout=0, mode=0o600)
    try:
        lock.acquire()
    except Timeout:
        other = read_status(url)
        raise AutotuneError(f"already running (pid {other['pid'] if other else 'unknown'})") from None
    _setup_logging(opts.log_file, opts.log_max_bytes, opts.log_backups)
    status = metrics = None
    try:
        daemon = Daemon(opts, url)
        metrics = _Metrics(opts.metrics_port)
        status = StatusFile(url, utcnow().isoformat() + "Z", metrics.port)
        signal.signal(signal.SIGTERM, daemon.on_signal)
        signal.signal(signal.SIGINT, daemon.on_signal)
        log.info(
            "daemon %d started: db %s, metrics 127.0.0.1:%d, gate %s", os.getpid(), url, metrics.port, asdict(opts.gate)
        )
        daemon.run(status, metrics)
        log.info("daemon %d stopped", os.getpid())
        return 0
    finally:
        if status is not None:
            status.remove()
        if metrics is not None:
            metrics.close()
        lock.release()
