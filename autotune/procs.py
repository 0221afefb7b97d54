"""Process-group helpers: every process autotune starts, it stops."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any, Protocol


class Reapable(Protocol):
    """A started process this one can wait for: a Popen, or a server forked for it (servers/prefork.py)."""

    pid: int

    def wait(self, timeout: float | None = None) -> int: ...


def interrupt_on_sigterm() -> None:
    """Take SIGTERM as Ctrl-C from now on: what Ctrl-C cleans up (servers, load generators, daemons), it does too."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# How long a command passed an interruption gets to stop its servers before its group is killed.
STOP_GRACE_S = 60.0


def run_command(
    argv: list[str], env: dict[str, str] | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """ARGV's exit code and output, as subprocess.run(capture_output=True) gives them. Interrupted (Ctrl-C, or SIGTERM
    taken as one), this passes SIGTERM on to ARGV alone (its own session: nothing else reaches it twice) and waits
    for it to stop what it started; subprocess.run would SIGKILL it 0.25 s in, leaving its servers running."""
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:  # an interruption, or the timeout
            kill_group(proc, grace_s=STOP_GRACE_S)
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def kill_group(proc: Reapable, grace_s: float = 0.0) -> None:
    """SIGTERM then SIGKILL the process group PROC leads, and reap PROC."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
            if sig == signal.SIGTERM:
                # A stopped (SIGSTOP, traced) process acts on SIGTERM only once continued.
                os.killpg(proc.pid, signal.SIGCONT)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=wait)
            if sig == signal.SIGTERM:
                # The leader is gone; anything it left in the group goes too.
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                break
        except subprocess.TimeoutExpired:
            continue
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def kill_group_of(pid: int) -> bool:
    """SIGKILL the whole group of PID (a server or generator leads its own), a process this one did not start;
    False when it is gone or not ours to kill."""
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
        return True
    except (ProcessLookupError, PermissionError):
        return False
