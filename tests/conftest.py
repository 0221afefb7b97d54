"""Shared fixtures: one AUTOTUNE_HOME per test session, built-in models, leak checks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

OUR_PROCESS_MARKERS = (
    "autotune.servers.local",
    "autotune-model-server",
    "autotune.load.generator",
    "autotune.cli daemon",
)

# Short measurement windows for tests that only need a trial to finish, not a precise figure.
SHORT = ["--window-s", "0.3", "--warmup-s", "0.2", "--max-windows", "4"]
AUTOTUNE = [sys.executable, "-m", "autotune.cli"]


def autotune(
    *args: str, env: dict[str, str] | None = None, db: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the autotune CLI: ENV entries override this process's environment, DB sets AUTOTUNE_DB_URL."""
    full = {**os.environ, **(env or {})}
    if db is not None:
        full["AUTOTUNE_DB_URL"] = db
    return subprocess.run([*AUTOTUNE, *args], capture_output=True, text=True, timeout=timeout, env=full)


def our_processes() -> list[psutil.Process]:
    """Server and load generator processes started from this machine's autotune."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if p.info["status"] != psutil.STATUS_ZOMBIE and any(m in cmd for m in OUR_PROCESS_MARKERS):
                found.append(p)
        except psutil.Error:
            continue
    return found


def wait_no_processes(timeout: float = 10.0, ignore: set[int] | None = None) -> list[psutil.Process]:
    """Wait for our processes (except pids in IGNORE, e.g. started before the test) to be gone."""
    ignore = ignore or set()
    deadline = time.monotonic() + timeout
    left = [p for p in our_processes() if p.pid not in ignore]
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [p for p in our_processes() if p.pid not in ignore]
    return left


def wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    """Poll CHECK until it is truthy; fail the test naming WHAT after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for: {what}")


@pytest.fixture(scope="session", autouse=True)
def autotune_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Reuse a model cache across runs when the caller points at one; else a fresh home.
    home = Path(os.environ.get("AUTOTUNE_TEST_HOME") or tmp_path_factory.mktemp("autotune-home"))
    os.environ["AUTOTUNE_HOME"] = str(home)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return home


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Every test must leave no model server or load generator running."""
    before = {p.pid for p in our_processes()}
    yield
    left = wait_no_processes(ignore=before)
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    assert not left, f"processes left running: {[p.pid for p in left]}"


@pytest.fixture(scope="session")
def tiny_model(autotune_home: Path):
    from autotune.models.resolve import resolve_model

    return resolve_model("tiny")


@pytest.fixture(scope="session")
def resnet_model(autotune_home: Path):
    from autotune.models.resolve import resolve_model

    return resolve_model("resnet")


@pytest.fixture
def start_server(tmp_path: Path):
    """Start autotune-model-server for a ModelRef with extra flags; stopped after the test."""
    from autotune.servers.backends import local_backend
    from autotune.servers.process import ServerProcess
    from autotune.trial import free_ports

    started: list[ServerProcess] = []

    def start(model, *extra: str, wait: bool = True):
        grpc_port, rest_port = free_ports(2)
        argv = [
            *local_backend().program,
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            f"--model_name={model.name}",
            f"--model_base_path={model.base_path}",
            *extra,
        ]
        server = ServerProcess(argv, tmp_path / f"server{len(started)}.log")
        started.append(server)
        if wait:
            server.wait_ready(rest_port, model.name, 120)
        server.grpc_port, server.rest_port = grpc_port, rest_port  # type: ignore[attr-defined]
        return server

    yield start
    for server in started:
        server.stop()
