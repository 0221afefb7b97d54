"""The trial runner's handle on a load generator process."""

from __future__ import annotations

import base64
import json
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from autotune.cores import pin_to
from autotune.procs import kill_group
from autotune.traffic.payload import Payload


class LoadGeneratorError(RuntimeError):
    """The load generator died or stopped answering."""


@dataclass(frozen=True)
class LoadSpec:
    """What the generator needs: where to send, what, and window timing."""

    protocol: str  # rest | grpc
    rest_port: int
    grpc_port: int
    model_name: str
    window_s: float
    warmup_s: float
    max_windows: int
    timeout_s: float = 30.0
    max_inflight: int = 64
    max_lifetime_s: float = 3600.0
    grpc_target: str | None = None  # default 127.0.0.1:grpc_port; unix:PATH for a server on a UNIX socket
    host: str = "127.0.0.1"  # where REST answers; anything but loopback must be in allow_hosts
    allow_hosts: tuple[str, ...] = ()  # other hosts the user named (--allow-remote): the generator refuses the rest

    def to_json(self, payloads: list[Payload]) -> dict[str, Any]:
        bodies = [p.grpc_request if self.protocol == "grpc" else p.rest_body for p in payloads]
        return {
            "protocol": self.protocol,
            "target": self.grpc_target or f"127.0.0.1:{self.grpc_port}",
            "url": f"http://{_bracketed(self.host)}:{self.rest_port}/v1/models/{self.model_name}:predict",
            "allow_hosts": list(self.allow_hosts),
            "bodies_b64": [base64.b64encode(body).decode() for body in bodies],
            # REST: each body's path (its model's), where one server serves several models.
            "paths": [f"/v1/models/{p.model or self.model_name}:predict" for p in payloads],
            "window_s": self.window_s,
            "warmup_s": self.warmup_s,
            "max_windows": self.max_windows,
            "timeout_s": self.timeout_s,
            "max_inflight": self.max_inflight,
            "max_lifetime_s": self.max_lifetime_s,
        }


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class LoadGenerator:
    """Start, command and stop `python -m autotune.load.generator` in its own process group."""

    def __init__(self, spec: LoadSpec, payloads: list[Payload], workdir: Path, cores: list[int] | None = None) -> None:
        spec_path = workdir / "load-spec.json"
        spec_path.write_text(json.dumps(spec.to_json(payloads)))
        self.log_path = workdir / "load-generator.log"
        self._log: IO[bytes] = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autotune.load.generator", str(spec_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
            text=True,
            preexec_fn=pin_to(cores),
        )
        self.pid = self.proc.pid
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._events.put(json.loads(line))
            except json.JSONDecodeError:
                continue
        self._events.put(None)

    def _send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise LoadGeneratorError(f"load generator exited ({self._tail()})") from None

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else f"exit code {self.proc.poll()}"

    def next_event(self, timeout: float) -> dict[str, Any]:
        """Next event from the generator; raise LoadGeneratorError if it died or went silent."""
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            raise LoadGeneratorError(f"load generator silent for {timeout:.0f}s") from None
        if event is None:
            self.proc.wait(timeout=5)
            raise LoadGeneratorError(f"load generator exited with code {self.proc.returncode} ({self._tail()})")
        return event

    def wait_ready(self, timeout: float = 60.0) -> None:
        event = self.next_event(timeout)
        if event.get("event") != "ready":
            raise LoadGeneratorError(f"unexpected first event from load generator: {event}")

    def closed_loop(self, concurrency: int, level_id: int, **window: float) -> None:
        """Start N clients sending back to back; windows carry LEVEL_ID (WINDOW overrides window_s etc.)."""
        self._send({"cmd": "level", "mode": "closed", "concurrency": concurrency, "id": level_id, **window})

    def open_loop(self, rate: float, level_id: int, **window: float) -> None:
        """Start Poisson arrivals at RATE requests/s; windows carry LEVEL_ID."""
        self._send({"cmd": "level", "mode": "open", "rate": rate, "id": level_id, **window})

    def idle(self) -> None:
        """Stop sending; connections stay open for the next level."""
        self._send({"cmd": "idle"})

    def stop(self) -> None:
        """Ask it to stop; kill its process group if it does not within seconds."""
        if self.proc.poll() is None:
            try:
                self._send({"cmd": "stop"})
            except LoadGeneratorError:
                pass
            deadline = time.monotonic() + 3.0
            while self.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        kill_group(self.proc)
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        self._log.close()
