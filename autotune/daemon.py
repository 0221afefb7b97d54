"""`autotune daemon`: one per host and database; claims queued jobs and runs them when the host is quiet.

It recovers on start (stale trials interrupted, orphaned servers killed, jobs
requeued), heartbeats its job, serves Prometheus metrics on 127.0.0.1, fires due
schedules, and on SIGTERM stops the current trial cleanly and hands the job back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock, Timeout

from autotune.errors import AutotuneError
from autotune.fingerprint import fingerprint, host_info
from autotune.gate import GateSettings, ResourceGate
from autotune.paths import autotune_home
from autotune.store.db import db_url
from autotune.store.queue import Queue
from autotune.store.schema import utcnow

log = logging.getLogger("autotune.daemon")
SERVER_MARKERS = ("autotune.servers.local", "autotune-model-server", "tensorflow_model_server", "docker")


@dataclass(frozen=True)
class DaemonOptions:
    log_file: Path | None = None
    poll_s: float = 2.0
    metrics_port: int = 9468  # 0: any free port (written to the status file)
    gate: GateSettings = field(default_factory=GateSettings)
    # A job whose worker on another host has not heartbeaten for this long is taken back (the host died).
    stale_after_s: float = 120.0
    recover_every_s: float = 15.0


def _key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:10]


def lock_path(url: str) -> Path:
    """The lock that makes one daemon per host and database."""
    return autotune_home() / f"daemon-{_key(url)}.lock"


def status_path(url: str) -> Path:
    """Where a running daemon publishes its pid, start time, metrics port and gate state."""
    return autotune_home() / f"daemon-{_key(url)}.json"


def logs_dir() -> Path:
    path = autotune_home() / "logs"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _is_daemon(pid: int) -> bool:
    try:
        cmd = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False
    return "autotune" in cmd and "daemon" in cmd


def read_status(url: str | None = None) -> dict[str, Any] | None:
    """The running daemon's status, or None when none runs for this database."""
    path = status_path(url or db_url())
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return status if _is_daemon(int(status.get("pid", 0))) else None


class _Status:
    """The status file, rewritten atomically on every change."""

    def __init__(self, url: str, metrics_port: int) -> None:
        self.path = status_path(url)
        self.data: dict[str, Any] = {
            "pid": os.getpid(),
            "started_at": utcnow().isoformat() + "Z",
            "db": url,
            "metrics_port": metrics_port,
            "gate": "open",
            "gate_reason": None,
            "job": None,
        }
        self.write()

    def update(self, **values: Any) -> None:
        self.data.update(values)
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


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
        if not any(m in cmd for m in SERVER_MARKERS):
            return False
        os.killpg(os.getpgid(pid), signal.SIGKILL)  # servers run in their own session and group
        return True
    except (psutil.Error, ProcessLookupError, PermissionError):
        return False


def _remove_orphan_containers() -> None:
    import shutil

    from autotune.servers.docker import LABEL

    if shutil.which("docker") is None:
        return
    try:
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={LABEL}"], capture_output=True, text=True, timeout=20
        ).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass


class Daemon:
    """The worker loop."""

    def __init__(self, opts: DaemonOptions, url: str) -> None:
        self.opts, self.url = opts, url
        self.stop = threading.Event()
        self.interruptible = False
        self.queue = Queue(url)
        info = host_info()
        self.host_fp = fingerprint(info)
        self.gate = ResourceGate(opts.gate)

    def on_signal(self, signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        self.stop.set()
        if self.interruptible:
            self.interruptible = False
            raise KeyboardInterrupt  # run_trial stops its server; the trial is recorded interrupted

    def recover(self) -> None:
        """Requeue jobs whose worker died (here, or silent on another host); kill servers left here."""
        orphans = self.queue.stale_jobs(self.host_fp, self.opts.stale_after_s)
        for o in orphans:
            killed = kill_orphan(o.server_pid)
            log.info(
                "recovered job %d: trial %d interrupted%s", o.job_id, o.trial, " (orphan killed)" if killed else ""
            )
        _remove_orphan_containers()

    def run(self, status: _Status, metrics: _Metrics) -> None:
        from autotune.store import schedules

        self.recover()
        recovered_at = time.monotonic()
        while not self.stop.is_set():
            self._fire_schedules(schedules)
            # Often enough that a host silent for stale_after_s is noticed soon after, not a period later.
            if time.monotonic() - recovered_at > min(self.opts.recover_every_s, self.opts.stale_after_s / 2):
                # Not only at start: another daemon sharing the database may die while this one runs.
                self.recover()
                recovered_at = time.monotonic()
            job_id = self.queue.claim_next(self.host_fp)
            if job_id is None:
                self.stop.wait(self.opts.poll_s)
                continue
            self._run_job(job_id, status, metrics)

    def _fire_schedules(self, schedules: Any) -> None:
        for row in schedules.claim_due(self.host_fp, self.url):
            try:
                job_id = enqueue_retune(row.model, row.trials, row.minutes, trigger="schedule")
                schedules.fired(row.id, job_id, self.url)
                log.info("schedule %d fired: retune job %d for %s", row.id, job_id, row.model)
            except AutotuneError as exc:
                log.error("schedule %d (%s) could not enqueue a retune: %s", row.id, row.model, exc)

    def _run_job(self, job_id: int, status: _Status, metrics: _Metrics) -> None:
        from autotune.job import JobControl, execute_job
        from autotune.tuner import TrialHooks

        cancel = threading.Event()
        waiting: dict[str, str | None] = {"reason": None}
        beat_stop = threading.Event()

        def heartbeat() -> None:
            while not beat_stop.wait(2.0):
                try:
                    if self.queue.heartbeat(job_id, waiting["reason"]):
                        cancel.set()
                except AutotuneError as exc:
                    log.warning("heartbeat failed: %s", exc)

        def on_wait(reason: str) -> None:
            waiting["reason"] = f"resource gate closed: {reason}"
            status.update(gate="closed", gate_reason=reason)
            metrics.gate.set(0)
            log.info("job %d waits: %s", job_id, reason)

        def before_trial() -> None:
            if self.gate.wait_open(self.stop, on_wait):
                waiting["reason"] = None
                status.update(gate="open", gate_reason=None)
                metrics.gate.set(1)
            self.interruptible = not self.stop.is_set()

        def accept(result: Any) -> bool:
            foreign = result.metrics.get("foreign_cores") or 0.0
            if foreign <= self.opts.gate.max_foreign_cores:
                return True
            log.info("job %d: foreign load %.2f cores during the trial; measuring again", job_id, foreign)
            before_trial()
            return False

        def finished(t: Any) -> None:
            self.interruptible = False
            state = "complete" if t.values is not None else t.result.failure_reason or "failed"
            metrics.trials.labels(state).inc()
            if t.feasible:
                metrics.goodput.labels(t.result.model).set(t.result.metrics.get("throughput_rps") or 0)

        control = JobControl(
            cancelled=cancel.is_set, stopping=self.stop.is_set, accept=accept, before_trial=before_trial
        )
        beat = threading.Thread(target=heartbeat, daemon=True)
        beat.start()
        status.update(job=job_id)
        metrics.running.set(1)
        log.info("job %d claimed", job_id)
        try:
            result = execute_job(job_id, TrialHooks(finished=finished), control)
            metrics.jobs.labels(result.state).inc()
            log.info("job %d %s after %d trials", job_id, result.state, len(result.trials))
        except KeyboardInterrupt:
            metrics.jobs.labels("cancelled").inc()
            log.info("job %d cancelled", job_id)
        except AutotuneError as exc:
            metrics.jobs.labels("failed").inc()
            log.error("job %d failed: %s", job_id, exc)
        except Exception:
            metrics.jobs.labels("failed").inc()
            log.exception("job %d failed", job_id)
        finally:
            self.interruptible = False
            beat_stop.set()
            beat.join(timeout=5)
            status.update(job=None)
            metrics.running.set(0)


def enqueue_retune(model: str, trials: int | None, minutes: float | None, trigger: str = "retune") -> int:
    """Enqueue a retune of MODEL with its study's settings (re-measures the stored Pareto set first)."""
    from autotune.job import enqueue_job, study_settings
    from autotune.models.resolve import served_name
    from autotune.spec import study_for_model
    from autotune.store.queries import last_job_settings
    from autotune.trial import MeasureSettings

    study = study_for_model(model)
    previous = last_job_settings(served_name(model))
    # Measure exactly as the job being checked for drift did, or the comparison means nothing.
    settings = MeasureSettings(**previous) if previous is not None else study_settings(study)
    return enqueue_job(study, trials or study.trials, minutes or study.minutes, settings, trigger=trigger)


def _setup_logging(log_file: Path | None) -> None:
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
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
    _setup_logging(opts.log_file)
    status = metrics = None
    try:
        daemon = Daemon(opts, url)
        metrics = _Metrics(opts.metrics_port)
        status = _Status(url, metrics.port)
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


def ensure_daemon(wait_s: float = 30.0) -> int:
    """The pid of this database's daemon, started in the background (own session) if none runs."""
    url = db_url()
    status = read_status(url)
    if status:
        return int(status["pid"])
    log_file = logs_dir() / "daemon.log"
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "autotune.cli", "daemon", "--log-file", str(log_file)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        status = read_status(url)
        if status:
            return int(status["pid"])
        if proc.poll() is not None:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise AutotuneError(f"the daemon exited at start: {tail[0]}")
        time.sleep(0.2)
    raise AutotuneError(f"the daemon did not come up within {wait_s:.0f}s (see {log_file})")


def stop_daemon(timeout_s: float = 60.0) -> int | None:
    """SIGTERM the daemon and wait for it; returns its pid, or None when none was running."""
    status = read_status()
    if not status:
        return None
    pid = int(status["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # Gone, or a zombie its parent has not reaped yet: either way it has stopped.
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return pid
        except psutil.NoSuchProcess:
            return pid
        time.sleep(0.2)
    raise AutotuneError(f"daemon {pid} did not stop within {timeout_s:.0f}s")


def systemd_unit() -> str:
    """A systemd unit running the daemon as the current user with this interpreter and home."""
    cmd = shlex.join([sys.executable, "-m", "autotune.cli", "daemon"])
    env = {"AUTOTUNE_HOME": str(autotune_home())}
    if os.environ.get("AUTOTUNE_DB_URL"):
        env["AUTOTUNE_DB_URL"] = os.environ["AUTOTUNE_DB_URL"]
    # systemd quotes Environment= values with double quotes; escape what would end them.
    envs = "\n".join(
        f'Environment="{k}={v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in env.items()
    )
    return f"""[Unit]
Description=autotune daemon: tunes TensorFlow Serving on this host
After=network.target

[Service]
Type=simple
ExecStart={cmd}
{envs}
KillSignal=SIGTERM
TimeoutStopSec=60
Restart=on-failure

[Install]
WantedBy=default.target
"""
