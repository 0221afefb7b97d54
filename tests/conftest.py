"""Shared fixtures: one AUTOTUNE_HOME per test session, built-in models, leak checks, the CLI, PostgreSQL."""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

# Every process this test session starts inherits this mark, so the leak check knows its own processes
# from a benchmark, a user's daemon or another test session running on the same machine.
SESSION_MARK = "AUTOTUNE_TEST_SESSION"
os.environ[SESSION_MARK] = uuid.uuid4().hex

OUR_PROCESS_MARKERS = (
    "autotune.servers.local",
    "autotune-model-server",
    "autotune.load.generator",
    "autotune.cli daemon",
)

# Stability that any windows' agreement passes: (max - min) / mean of the 3 chunks compared is below 3, so a level
# is stable once it holds its 200 requests. For tests about what a measurement is for, not whether short windows
# on a busy 2-core host happen to agree (test_measurement checks the rule itself).
ANY_SPREAD = ["--tolerance", "3", "--p99-tolerance", "3"]
# Short measurement windows for tests that only need a trial to finish, not a precise figure: a level takes 0.6 s
# where 200 requests take 0.2 s, and up to 1.2 s (167 requests/s) on a slower host.
SHORT = ["--window-s", "0.2", "--warmup-s", "0.2", "--max-windows", "6", *ANY_SPREAD]
AUTOTUNE = [sys.executable, "-m", "autotune.cli"]


# How autotune() runs a command: in this process (the default), or as `python -m autotune.cli` under
# AUTOTUNE_TEST_CLI=process. In this process, a command pays no interpreter start, no imports and, above all, no
# fork server's TensorFlow import of its own (about 3 s of each command that starts a server): the suite's fork
# server serves them all. Tests about the process itself (signals, exit under kill, the daemon) start one.
CLI_MODE = os.environ.get("AUTOTUNE_TEST_CLI", "in-process")
OWN_PROCESS = {"daemon"}  # a loop with signal handlers of its own, run until stopped


def autotune(
    *args: str,
    env: dict[str, str] | None = None,
    db: str | None = None,
    timeout: float = 300,
    own_process: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the autotune CLI: ENV entries override this process's environment, DB sets AUTOTUNE_DB_URL; OWN_PROCESS
    where the test is about what a process leaves behind when it exits (its open database, for one). TIMEOUT bounds
    a command in a process of its own."""
    overrides = dict(env or {})
    if db is not None:
        overrides["AUTOTUNE_DB_URL"] = db
    if CLI_MODE == "in-process" and not own_process and not OWN_PROCESS & set(args):
        return _in_process(list(args), overrides)
    full = {**os.environ, **overrides}
    return subprocess.run([*AUTOTUNE, *args], capture_output=True, text=True, timeout=timeout, env=full)


def _in_process(args: list[str], overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`autotune ARGS` run by the console-script entry in this process, under OVERRIDES, as a CompletedProcess.

    What a process would start afresh is set afresh: argv, the environment, what was said once (notes) and the
    SIGTERM handler main() installs. Ctrl-C or SIGTERM, which the command takes as its own interruption (it stops its
    servers), then stops the session. A command that hangs is stopped by the test's own timeout (pytest-timeout's
    SIGALRM raises in it; its servers stop as the exception unwinds), not by TIMEOUT.
    """
    import io

    from autotune import notes
    from autotune.cli.common import EXIT_INTERRUPTED
    from autotune.cli.main import main

    saved_env = {k: os.environ.get(k) for k in overrides}
    saved_argv, saved_term = sys.argv, signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    code: int = 0
    os.environ.update(overrides)
    sys.argv = ["autotune", *args]
    notes._said.clear()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved_argv
        signal.signal(signal.SIGTERM, saved_term)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if code == EXIT_INTERRUPTED:  # Ctrl-C or SIGTERM to the test session, taken by the command: the session stops
        raise KeyboardInterrupt
    return subprocess.CompletedProcess([*AUTOTUNE, *args], code, out.getvalue(), err.getvalue())


def our_processes() -> list[psutil.Process]:
    """Servers, load generators and daemons started by this test session (never anyone else's)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if p.info["status"] == psutil.STATUS_ZOMBIE or not any(m in cmd for m in OUR_PROCESS_MARKERS):
                continue
            if p.environ().get(SESSION_MARK) == os.environ[SESSION_MARK]:
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
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {what}")


def load_flowing(root: psutil.Process) -> bool:
    """Whether a load generator below ROOT holds an established connection: requests reach a server."""
    for child in root.children(recursive=True):
        try:
            if "autotune.load.generator" in " ".join(child.cmdline()) and any(
                c.status == psutil.CONN_ESTABLISHED for c in child.net_connections("inet")
            ):
                return True
        except psutil.Error:
            continue
    return False


def wait_load_flowing(root: psutil.Process, timeout: float = 120.0) -> None:
    """Wait for the event a test means by "mid-measurement": requests flowing from ROOT's load generator."""
    wait_for(lambda: load_flowing(root), timeout, f"a load generator below pid {root.pid} sending requests")


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


def _profile_key(model) -> tuple[str, str]:
    """Where the store keeps MODEL's profile on this host: its content hash and the host fingerprint."""
    from autotune.fingerprint import fingerprint, host_info
    from autotune.models.content import content_hash

    return content_hash(model.version_path), fingerprint(host_info())


@pytest.fixture(scope="session")
def tiny_profile(tiny_model, autotune_home: Path) -> dict[str, Any]:
    """This host's profile of tiny (both protocols), measured once a session into the session's store: the cache a
    host that has tuned tiny before has."""
    from autotune.store.profiles import Profiles

    # The least budget: the tests need its shape (both protocols, every batch size), not its precision.
    proc = autotune("profile", "--model", "tiny", "--budget-s", "1", "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = Profiles().get(*_profile_key(tiny_model))
    assert doc is not None
    return doc


@pytest.fixture
def plain_env(tmp_path: Path) -> dict[str, str]:
    """This environment with a store of the test's own, holding nothing (no profile: a job there profiles first)."""
    return {**os.environ, "AUTOTUNE_DB_URL": f"sqlite:///{tmp_path / 'autotune.db'}"}


@pytest.fixture
def profiled(tiny_model, tiny_profile: dict[str, Any]) -> Callable[[str], str]:
    """Give the store at a URL the session's profile of tiny, so that a model-seeded job there plans from it instead
    of profiling first; returns the URL."""
    from autotune.store.profiles import Profiles

    def give(url: str) -> str:
        Profiles(url).put(*_profile_key(tiny_model), "tiny", tiny_profile)
        return url

    return give


@pytest.fixture(scope="session")
def resnet_model(autotune_home: Path):
    from autotune.models.resolve import resolve_model

    return resolve_model("resnet")


@contextlib.contextmanager
def servers_in(log_dir: Path) -> Iterator[Callable[..., Any]]:
    """A function that starts autotune-model-server for a ModelRef with extra flags; every one stopped on exit."""
    from autotune.measure import free_ports
    from autotune.servers.argv import one_model_argv
    from autotune.servers.backends import local_backend
    from autotune.servers.process import ServerProcess

    started: list[ServerProcess] = []

    def start(model, *extra: str, wait: bool = True):
        grpc_port, rest_port = free_ports(2)
        argv = [*one_model_argv(local_backend().program, model.name, model.base_path, grpc_port, rest_port), *extra]
        server = ServerProcess(argv, log_dir / f"server{len(started)}.log")
        started.append(server)
        if wait:
            server.wait_ready(rest_port, model.name, 120)
        server.grpc_port, server.rest_port = grpc_port, rest_port  # type: ignore[attr-defined]
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start autotune-model-server for a ModelRef with extra flags; stopped after the test."""
    with servers_in(tmp_path) as start:
        yield start


@pytest.fixture(scope="module")
def shared_tiny_server(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One plain tiny server for the tests of a module that only send it requests (each start costs ~6 s)."""
    with servers_in(tmp_path_factory.mktemp("shared-server")) as start:
        yield start(tiny_model)


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Callable[[], str]]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, its own socket dir), stopped after the session.

    Yields a function that creates a fresh, empty database in it and returns its URL.
    """
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql); the multi-host tests need it")
    pytest.importorskip("psycopg", reason="psycopg is in the test extra; not installed here")
    root = Path(tempfile.mkdtemp(prefix="autotune-pg-"))
    run_as: dict = {}
    if os.geteuid() == 0:  # postgres refuses to run as root: use the package's own unprivileged user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the cluster as")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    data = root / "data"
    subprocess.run(
        [bindir / "initdb", "-D", data, "-U", "autotune", "--auth=trust", "--no-sync"],
        check=True, capture_output=True, timeout=120, **run_as,
    )  # fmt: skip
    from autotune.measure import free_ports

    (port,) = free_ports(1)
    server = subprocess.Popen(
        [bindir / "postgres", "-D", data, "-h", "127.0.0.1", "-p", str(port), "-k", root, "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=open(root / "postgres.log", "wb"), start_new_session=True, **run_as,
    )  # fmt: skip
    try:
        import psycopg

        admin = f"host=127.0.0.1 port={port} user=autotune dbname=postgres"
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(admin).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline or server.poll() is not None:
                    log = (root / "postgres.log").read_text()[-500:]
                    raise AssertionError(f"postgres did not start: {log}") from None
                time.sleep(0.3)
        numbers = itertools.count()

        def new_database() -> str:
            name = f"autotune_{next(numbers)}"
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(f"create database {name}")
            return f"postgresql+psycopg://autotune@127.0.0.1:{port}/{name}"

        yield new_database
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        shutil.rmtree(root, ignore_errors=True)
