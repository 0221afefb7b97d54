"""The stand-in forked ready-imported (servers/prefork.py) is the server an exec'd one is: its own session, the
same command line, log, cores, RSS and answers, and it fails and stops the same way. A profiling probe forked is
the probe an exec'd one is too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from autotune.cpulimit import CpuPlan
from autotune.errors import AutotuneError
from autotune.measure import free_ports
from autotune.servers import prefork
from autotune.servers.argv import one_model_argv
from autotune.servers.backends import local_backend
from autotune.servers.prefork import START_ENV, ForkedProcess, forkable
from autotune.servers.process import ServerProcess, ServerStartError
from tests.conftest import SESSION_MARK

NO_GPU = not prefork.nvidia_devices()
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


def test_only_the_module_its_caller_names_run_by_this_interpreter_is_forked_and_exec_turns_forking_off(monkeypatch):
    stand_in = [sys.executable, "-m", "autotune.servers.local", "--port=1"]
    env = {k: v for k, v in os.environ.items() if k != START_ENV}
    assert forkable(stand_in, env) is NO_GPU  # CUDA does not survive a fork: exec'd on a GPU host
    probe = [sys.executable, "-m", "autotune.perfmodel.probe", "/m", "serving_default", "1"]
    assert forkable(probe, env, "autotune.perfmodel.probe") is NO_GPU  # its caller names the module it forks
    assert not forkable(probe, env)  # not the stand-in
    assert not forkable(["tensorflow_model_server", "--port=1"], env)
    assert not forkable(["/another/python", "-m", "autotune.servers.local", "--port=1"], env)
    assert not forkable([sys.executable, "-m", "http.server"], env)
    assert not forkable([sys.executable, "-c", "import autotune.servers.local"], env)
    assert not forkable(stand_in, {**env, START_ENV: "exec"})


@needs_no_gpu
@pytest.mark.parametrize("mode", ["fork", "exec"])
def test_a_profiling_probe_forked_or_execd_measures_the_same_points_and_its_cpu_is_not_foreign(
    tiny_model, monkeypatch, mode
):
    from autotune.perfmodel import measure

    monkeypatch.setenv(START_ENV, mode)
    forked: list[list[str]] = []  # the real class, watched: which probes were forked
    monkeypatch.setattr(
        prefork, "ForkedProcess", lambda argv, *a, **k: forked.append(argv) or ForkedProcess(argv, *a, **k)
    )
    points, foreign = measure.probe(tiny_model, 1, [1, 3], 3, 1.0)
    assert [p.batch for p in points] == [1, 3] and all(p.wall_ms > 0 and p.repeats >= 3 for p in points)
    assert [argv[2] for argv in forked] == (["autotune.perfmodel.probe"] if mode == "fork" else [])
    # The probe's CPU (a forked one's is the fork server's reaped child's) is its caller's: a probe at one thread
    # would otherwise read as about a core of foreign load (the host's other load, pytest's own, counts too).
    assert foreign < 0.5


def test_a_probe_of_a_variant_that_was_never_built_fails_in_one_line(tiny_model):
    from autotune.perfmodel import measure

    with pytest.raises(AutotuneError, match=r"profiling tiny failed at 1 threads: .*no model.tflite"):
        measure.probe(tiny_model, 1, [1], 3, 1.0, variant="tflite_fp16")


@needs_no_gpu
def test_a_server_to_import_tensorflow_under_another_environment_than_the_fork_servers_is_execd(monkeypatch):
    stand_in = [sys.executable, "-m", "autotune.servers.local", "--port=1"]
    monkeypatch.setattr(prefork, "_fork_server_env", {"TF_ENABLE_ONEDNN_OPTS": "1"})  # as it was started
    assert forkable(stand_in, {"TF_ENABLE_ONEDNN_OPTS": "1", "TMPDIR": "/t", "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert not forkable(stand_in, {"TF_ENABLE_ONEDNN_OPTS": "0"})  # read as TF loads: too late in a fork
    assert not forkable(stand_in, {"TF_ENABLE_ONEDNN_OPTS": "1", "OMP_NUM_THREADS": "1"})


# Prepares the local backend, says the fork server's pid (or None), then waits to be killed.
PREPARED = """
from multiprocessing import forkserver
import sys
from autotune.servers.backends import local_backend
local_backend().prepare()
print(forkserver._forkserver._forkserver_pid, flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def _prepared(mode: str) -> Iterator[tuple[int, str]]:
    """A process that prepared the local backend under AUTOTUNE_SERVER_START=MODE: its pid, and what it says its fork
    server's is."""
    env = {**os.environ, START_ENV: mode}
    owner = subprocess.Popen([sys.executable, "-c", PREPARED], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        assert owner.stdout is not None
        yield owner.pid, owner.stdout.readline().decode().strip()
    finally:
        owner.kill()
        owner.wait(10)


@needs_no_gpu
def test_a_prepared_local_backend_starts_its_fork_server_before_any_server():
    with _prepared("fork") as (owner, said):
        fork_server = psutil.Process(int(said))
        assert fork_server.ppid() == owner and "forkserver" in " ".join(fork_server.cmdline())
        fork_server.kill()  # mid-import: it would go with its owner only once the import is done


def test_a_prepared_local_backend_starts_no_fork_server_where_servers_are_execd():
    with _prepared("exec") as (_, said):
        assert said == "None"


@needs_no_gpu
@pytest.mark.slow
def test_a_forked_server_has_its_own_session_command_line_and_log_and_answers_as_an_execd_one(
    tiny_model, tmp_path, monkeypatch
):
    forked, argv, _, forked_port = _start(tiny_model, tmp_path / "forked.log", "fork", monkeypatch)
    execd, _, _, exec_port = _start(tiny_model, tmp_path / "execd.log", "exec", monkeypatch)
    try:
        assert isinstance(forked.proc, ForkedProcess) and isinstance(execd.proc, subprocess.Popen)
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


OWNER = """
import sys
from pathlib import Path

from autotune.measure import free_ports
from autotune.servers.argv import one_model_argv
from autotune.servers.backends import local_backend
from autotune.servers.process import ServerProcess

name, base, log = sys.argv[1:]
grpc_port, rest_port = free_ports(2)
server = ServerProcess(one_model_argv(local_backend().program, name, Path(base), grpc_port, rest_port), Path(log))
server.wait_ready(rest_port, name, 120)
print(server.pid, flush=True)
sys.stdin.read()  # until killed
"""


@needs_no_gpu
@pytest.mark.slow
def test_the_fork_server_goes_with_the_process_that_started_it_even_under_kill_9(tiny_model, tmp_path):
    argv = [sys.executable, "-c", OWNER, tiny_model.name, str(tiny_model.base_path), str(tmp_path / "server.log")]
    env = {k: v for k, v in os.environ.items() if k != START_ENV}
    owner = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    server: psutil.Process | None = None
    try:
        assert owner.stdout is not None
        server = psutil.Process(int(owner.stdout.readline()))
        helpers = psutil.Process(owner.pid).children()  # the fork server and multiprocessing's resource tracker
        assert server.parent() in helpers and len(helpers) == 2
        owner.kill()
        owner.wait(timeout=10)
        _, alive = psutil.wait_procs(helpers, timeout=10)
        assert not alive  # they read EOF on the dead owner's pipe and exit
        # Its server is an orphan, as an exec'd one is after kill -9: the daemon's sweep finds it by its command line.
        assert server.is_running() and "autotune.servers.local" in " ".join(server.cmdline())
    finally:
        owner.kill()
        if server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
