"""A model server process: start in its own group, wait until ready, stop for sure."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests

from autotune.cpulimit import CpuCgroup, CpuPlan, preexec
from autotune.errors import AutotuneError, TrialError
from autotune.procs import kill_group
from autotune.servers.prefork import ForkedProcess, forkable


class ServerStartError(TrialError):
    """The server exited or never became ready."""


@dataclass
class ReadyInfo:
    """When the model became AVAILABLE, seconds after the process started."""

    load_time_s: float


class ServerProcess:
    """One server process (an argv list, no shell), logging to a file, under its CPU allowance if given; the stand-in
    is forked ready-imported where it can be (servers/prefork.py)."""

    def __init__(
        self,
        argv: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cleanup: list[str] | None = None,
        cpu: CpuPlan | None = None,
    ) -> None:
        self.argv = argv
        self.cleanup = cleanup
        self.log_path = log_path
        # A fractional allowance gets a cgroup of its own, created before the process and removed after it.
        try:
            self.cgroup = CpuCgroup(cpu.quota_us) if cpu is not None and cpu.quota_us else None
        except AutotuneError as exc:
            raise ServerStartError("server_start_failed", str(exc)) from None
        # TensorFlow's autograph writes a source file per converted function into the temp dir and never removes
        # it: in the server's own directory (the trial's, removed after it) they cannot pile up in /tmp.
        env = {**(os.environ if env is None else env), "TMPDIR": str(log_path.parent)}
        self._log: IO[bytes] = open(log_path, "wb")
        self.started = time.monotonic()
        cores = cpu.server_cores if cpu is not None else None
        self.proc: subprocess.Popen[bytes] | ForkedProcess
        try:
            if forkable(argv, env):
                self.proc = ForkedProcess(argv, log_path, env, cores, self.cgroup)
            else:
                self.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=self._log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                    preexec_fn=preexec(cores, self.cgroup),
                )
        except BaseException:
            self._log.close()
            if self.cgroup is not None:
                self.cgroup.remove()
            raise
        self.pid = self.proc.pid

    def throttling(self) -> tuple[int, float] | None:
        """(CFS periods throttled, seconds throttled) under the server's quota so far; None without one."""
        return self.cgroup.throttling() if self.cgroup is not None else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last LINES lines of the server log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def last_error_line(self) -> str:
        """The most telling line of the log: the server's own error line if there is one."""
        tail = self.log_tail(40).splitlines()
        for line in reversed(tail):
            if "error" in line.lower():
                return line.strip()
        return tail[-1].strip() if tail else f"exit code {self.proc.returncode}"

    def wait_ready(self, rest_port: int, model_name: str, timeout_s: float) -> ReadyInfo:
        """Poll GET /v1/models/NAME until a version is AVAILABLE."""
        url = f"http://127.0.0.1:{rest_port}/v1/models/{model_name}"
        deadline = self.started + timeout_s
        with requests.Session() as session:
            while time.monotonic() < deadline:
                if not self.alive():
                    message = f"server exited with code {self.proc.returncode}: {self.last_error_line()}"
                    raise ServerStartError("server_start_failed", message)
                try:
                    r = session.get(url, timeout=2)
                    if r.status_code == 200:
                        states = [v.get("state") for v in r.json().get("model_version_status", [])]
                        if "AVAILABLE" in states:
                            return ReadyInfo(time.monotonic() - self.started)
                except (requests.RequestException, ValueError):
                    pass
                time.sleep(0.1)
        raise ServerStartError("timeout", f"model not AVAILABLE within {timeout_s:.0f}s")

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the group, SIGKILL it after GRACE_S; always reaps."""
        kill_group(self.proc, grace_s)
        if self.cleanup:
            # A container outlives its `docker run` client: remove it by name, bounded in time.
            try:
                subprocess.run(self.cleanup, stdout=self._log, stderr=subprocess.STDOUT, timeout=60, check=False)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.cgroup is not None:
            self.cgroup.remove()
        self._log.close()
