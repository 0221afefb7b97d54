"""How commands find, start and stop the daemon: its lock and status files, without loading the daemon itself.

Read-only commands (`status`, `follow`) come through here, so they stay light:
no TensorFlow, Optuna, NumPy or SQLAlchemy to import for a look at a file and a pid.
The running daemon keeps its status file current with the jobs and the gate, so
`status` reads that file and touches the database only when no daemon runs or a
command changed a job since the daemon last wrote it (the "changed" marker).
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
from pathlib import Path
from typing import Any

from autotune.errors import AutotuneError
from autotune.paths import autotune_home, db_url


def _key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:10]


def lock_path(url: str) -> Path:
    """The lock that makes one daemon per host and database."""
    return autotune_home() / f"daemon-{_key(url)}.lock"


def status_path(url: str) -> Path:
    """Where a running daemon publishes its pid, start time, metrics port and gate state."""
    return autotune_home() / f"daemon-{_key(url)}.json"


def changed_path(url: str) -> Path:
    """Touched by a command that changed a job (start, stop, retune): the daemon's job list is older than it."""
    return autotune_home() / f"daemon-{_key(url)}.changed"


def mark_changed(url: str | None = None) -> None:
    """Say that the jobs changed since the daemon's last snapshot: `status` reads the store until it writes anew."""
    path = changed_path(url or db_url())
    with contextlib.suppress(OSError):
        path.touch(mode=0o600)
        os.utime(path)


# A file's time comes from the kernel's coarse clock, a tick behind time.time(): a command's mark made just after a
# snapshot can read as made before it. A snapshot is trusted only once it is clearly later than the mark.
MTIME_SLACK_S = 0.05


def snapshot_is_current(status: dict[str, Any], url: str | None = None) -> bool:
    """Whether a running daemon's STATUS holds a job list no command has changed since."""
    if "jobs" not in status or "jobs_at" not in status:
        return False
    try:
        changed = changed_path(url or db_url()).stat().st_mtime
    except OSError:
        return True
    return changed < float(status["jobs_at"]) - MTIME_SLACK_S


def logs_dir() -> Path:
    path = autotune_home() / "logs"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _db_url() -> str:
    return db_url()


def _is_daemon(pid: int) -> bool:
    # /proc rather than psutil: its import alone costs a `status` call a tenth of its CPU budget.
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        if Path("/proc/self").exists():
            return False
        import psutil  # not Linux: ask psutil

        try:
            cmd = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            return False
    return pid > 0 and "autotune" in cmd and "daemon" in cmd


def read_status(url: str | None = None) -> dict[str, Any] | None:
    """The running daemon's status, or None when none runs for this database."""
    path = status_path(url or _db_url())
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return status if _is_daemon(int(status.get("pid", 0))) else None


class StatusFile:
    """The daemon's status file, rewritten atomically on every change (by the loop and the heartbeat thread)."""

    def __init__(self, url: str, started_at: str, metrics_port: int) -> None:
        self.path = status_path(url)
        self.data: dict[str, Any] = {
            "pid": os.getpid(),
            "started_at": started_at,
            "db": url,
            "metrics_port": metrics_port,
            "gate": "open",
            "gate_reason": None,
            "job": None,
        }
        self._lock = threading.Lock()
        self.failed: str | None = None  # why the last write failed, said once until one succeeds
        self.write()

    def update(self, **values: Any) -> None:
        with self._lock:
            self.data.update(values)
            self._write()

    def write(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.data, default=str))
            os.chmod(tmp, 0o600)
            tmp.replace(self.path)
        except OSError as exc:
            # A full disk or a read-only home: `status` reads the last snapshot (or the store) until a write
            # succeeds again. A daemon must not die of its own status file.
            with contextlib.suppress(OSError):
                tmp.unlink()
            if exc.strerror != self.failed:
                logging.getLogger("autotune.daemon").warning("status file %s not written: %s", self.path, exc.strerror)
            self.failed = exc.strerror
            return
        self.failed = None

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def ensure_daemon(wait_s: float = 30.0) -> int:
    """The pid of this database's daemon, started in the background (own session) if none runs."""
    url = _db_url()
    status = read_status(url)
    if status:
        return int(status["pid"])
    log_file = logs_dir() / "daemon.log"
    # The log rotates (the daemon's own handler); what escapes it (a crash at start) goes to a file of its own,
    # which a rotation would otherwise leave writing into an old log.
    out_file = logs_dir() / "daemon.out"
    with open(out_file, "ab") as out:
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
            tail = out_file.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
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
    import psutil

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
