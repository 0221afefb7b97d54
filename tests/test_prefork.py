"""The stand-in forked ready-imported (servers/prefork.py) is the server an exec'd one is: its own session, the
same command line, log, cores, RSS and answers, and it fails and stops the same way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from autotune.cpulimit import CpuPlan
from autotune.measure import free_ports
from autotune.servers.argv import one_model_argv
from autotune.servers.backends import local_backend
from autotune.servers.prefork import START_ENV, ForkedServer, forkable
from autotune.servers.process import ServerProcess, ServerStartError
from tests.conftest import SESSION_MARK

NO_GPU = not any(Path("/dev").glob("nvidia[0-9]*"))
needs_no_gpu = pytest.mark.skipif(not NO_GPU, reason="servers are exec'd, not forked, on a host with an NVIDIA GPU")


def _start(
    model, log: Path, mode: str, monkeypatch, grpc_port: int | None = None, **kwargs
) -> tuple[ServerProcess, list[str], int, int]:
    """A MODEL server started the MODE way (fork or exec): the server, its argv, its gRPC and REST ports."""
    monkeypatch.setenv(START_ENV, mode)
    free_grpc, rest_port = free_ports(2)
    grpc_port = grpc_port or free_grpc
    argv = one_model_argv(local_backend().program, model.name, model.base_path, grpc_port, rest_port)
    return ServerProcess(argv, log, **kwargs), argv, grpc_port, rest_port


def _predict(rest_port: int, name: str) -> dict:
    r = requests.post(f"http://127.0.0.1:{rest_port}/v1/models/{name}:predict", json={"instances": [[0.5] * 32]})
    assert r.status_code == 200, r.text
    return r.json()


def test_only_the_stand_in_this_interpreter_runs_is_forked_and_exec_turns_forking_off(monkeypatch):
    stand_in = [sys.executable, "-m", "autotune.servers.local", "--port=1"]
    monkeypatch.delenv(START_ENV, raising=False)
    assert forkable(stand_in) is NO_GPU  # CUDA does not survive a fork: exec'd on a GPU host
    assert not forkable(["tensorflow_model_server", "--port=1"])
    assert not forkable(["/another/python", "-m", "autotune.servers.local", "--port=1"])
    monkeypatch.setenv(START_ENV, "exec")
    assert not forkable(stand_in)


@needs_no_gpu
@pytest.mark.slow
def test_a_forked_server_has_its_own_session_command_line_and_log_and_answers_as_an_execd_one(
    tiny_model, tmp_path, monkeypatch
):
    forked, argv, _, forked_port = _start(tiny_model, tmp_path / "forked.log", "fork", monkeypatch)
    execd, _, _, exec_port = _start(tiny_model, tmp_path / "execd.log", "exec", monkeypatch)
    try:
        assert isinstance(forked.proc, ForkedServer) and isinstance(execd.proc, subprocess.Popen)
        for server, port in ((forked, forked_port), (execd, exec_port)):
            server.wait_ready(port, tiny_model.name, 120)
        proc = psutil.Process(forked.pid)
        assert os.getpgid(forked.pid) == forked.pid  # its own group: stopping it stops all it runs
        # The orphan sweeps and `ps` know it by the command line an exec'd server has, model path included.
        assert " ".join(proc.cmdline()).startswith(" ".join(argv[:5])), proc.cmdline()
        assert str(tiny_model.base_path) in " ".join(proc.cmdline())
        assert proc.environ().get(SESSION_MARK) == os.environ[SESSION_MARK]  # still readable
        assert "serving gRPC" in forked.log_tail()
        # Its RSS counts TF's library pages as an exec'd server's does (what a k8s export requests comes from it).
        rss = {s: psutil.Process(s.pid).memory_info().rss for s in (forked, execd)}
        assert rss[forked] == pytest.approx(rss[execd], rel=0.05), rss
        assert _predict(forked_port, tiny_model.name) == _predict(exec_port, tiny_model.name)
    finally:
        forked.stop()
        execd.stop()
    assert forked.proc.poll() == 0 and not psutil.pid_exists(forked.pid)  # SIGTERM'd: a clean exit, reaped


@needs_no_gpu
@pytest.mark.slow
def test_a_forked_server_that_cannot_bind_its_port_reports_its_exit_code_and_error_line(
    tiny_model, tmp_path, monkeypatch
):
    first, _, busy_grpc, rest_port = _start(tiny_model, tmp_path / "first.log", "fork", monkeypatch)
    try:
        first.wait_ready(rest_port, tiny_model.name, 120)
        second, _, _, other_rest = _start(tiny_model, tmp_path / "second.log", "fork", monkeypatch, busy_grpc)
        try:
            with pytest.raises(ServerStartError, match=r"server exited with code 1: .*busy"):
                second.wait_ready(other_rest, tiny_model.name, 120)
        finally:
            second.stop()
    finally:
        first.stop()


@needs_no_gpu
@pytest.mark.slow
def test_a_forked_server_runs_on_the_cores_it_was_given_and_stops_on_sigterm(tiny_model, tmp_path, monkeypatch):
    core = sorted(os.sched_getaffinity(0))[-1]
    plan = CpuPlan(cpus=1.0, server_cores=[core], client_cores=[], quota_us=None)
    server, _, _, rest_port = _start(tiny_model, tmp_path / "server.log", "fork", monkeypatch, cpu=plan)
    try:
        server.wait_ready(rest_port, tiny_model.name, 120)
        assert psutil.Process(server.pid).cpu_affinity() == [core]
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=10) == 0
    finally:
        server.stop()
