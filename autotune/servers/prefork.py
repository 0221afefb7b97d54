"""Start autotune's stand-in server (or a profiling probe) by forking it from a process that has already imported
TensorFlow.

A fresh interpreter spends 2.6-3 s importing TensorFlow before it loads the model; TF Serving, a C++ binary, does
not. Forked from multiprocessing's fork server, which imports TF once per autotune process, the stand-in is up in
about 0.3 s. Only autotune's own modules run by this interpreter, and only on hosts without an NVIDIA GPU: CUDA
does not survive a fork (benchmarks/server_start.py measures both ways).
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import importlib
import importlib.util
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from autotune.cpulimit import CpuCgroup, preexec

STAND_IN = "autotune.servers.local"
# Not named like a server (daemon.SERVER_MARKERS): the fork server itself serves nothing and is no orphan.
PRELOAD = "autotune.servers.preload"
# The environment variable that turns forking off (`exec`): every server a fresh interpreter, as before.
START_ENV = "AUTOTUNE_SERVER_START"
MADV_POPULATE_READ = 22  # Linux 5.14+: map a range's pages in, as reading them would
PRESENT = 1 << 63  # /proc/PID/pagemap: the page is in memory

# (address, length) runs of the file pages the fork server's import left mapped in (set by servers/preload.py).
# A fork copies no page tables of unwritten file mappings: without mapping these in again, a forked server's RSS
# would leave out the ~300 MiB of TF's library an exec'd server's import maps in, and every RSS figure (and the
# memory a k8s export requests) would be far too low.
resident_file_runs: list[tuple[int, int]] = []
_STARTING = threading.Lock()


# Read by TensorFlow and its math libraries when they load: a server whose environment differs in these from the
# one the fork server was started with is exec'd, to import under its own (TF_CPP_ only sets logging).
IMPORT_ENV = ("TF_", "ONEDNN_", "DNNL_", "OMP_", "KMP_", "MKL_", "OPENBLAS_", "CUDA_", "XLA_")
_fork_server_env: dict[str, str] | None = None  # those variables as the fork server got them; None: not started


def import_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of ENV that TensorFlow and its libraries read as they load."""
    return {k: v for k, v in env.items() if k.startswith(IMPORT_ENV) and not k.startswith("TF_CPP_")}


def forkable(argv: list[str], env: Mapping[str, str], module: str = STAND_IN) -> bool:
    """Whether ARGV is `python -m MODULE` (the caller's to name: a module of autotune with a `main(argv)`) run by
    this interpreter, to run under ENV, on a host where forking it is safe and asked for."""
    if env.get(START_ENV, "fork") == "exec" or argv[:3] != [sys.executable, "-m", module]:
        return False
    if _fork_server_env is not None and import_env(env) != _fork_server_env:
        return False
    return not nvidia_devices()


def nvidia_devices() -> bool:
    """Whether the host has NVIDIA device nodes (a driver NVML may not reach still counts: no fork then)."""
    return any(Path("/dev").glob("nvidia[0-9]*"))


def _fork_context() -> multiprocessing.context.ForkServerContext:
    """multiprocessing's fork server, preloading TensorFlow and the stand-in; the first call fixes its environment."""
    global _fork_server_env
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([PRELOAD])
    if _fork_server_env is None:  # the fork server is spawned with this process's environment
        _fork_server_env = import_env(os.environ)
    return context


def start_early(argv: list[str]) -> None:
    """Start the fork server now if ARGV (a server's command) would be forked from it: its TensorFlow import then
    runs beside the caller's own set-up (a job's plan) instead of before the first server."""
    if forkable(argv, os.environ):
        from multiprocessing import forkserver

        _fork_context()
        forkserver.ensure_running()


class ForkedProcess:
    """`python -m` of an autotune module (the stand-in, a probe) forked from the fork server, with the part of
    Popen's interface the callers use."""

    def __init__(
        self,
        argv: list[str],
        log_path: Path,
        env: dict[str, str],
        cores: list[int] | None = None,
        cgroup: CpuCgroup | None = None,
        stdout_path: Path | None = None,
    ) -> None:
        context = _fork_context()
        args = (argv, str(log_path), env, cores, cgroup, None if stdout_path is None else str(stdout_path))
        # Daemonic: should its owner exit without stopping it, multiprocessing terminates it on the way out.
        self._process = context.Process(target=run_forked, args=args, name="autotune-forked", daemon=True)
        _start_without_main(self._process)
        assert self._process.pid is not None
        self.pid: int = self._process.pid
        self.args = argv

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return code

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)


def fork_server_cpu_s() -> float:
    """CPU seconds of the fork server (its TF import among them) and of the children it has reaped: what a caller
    cannot count as its own children's, as it can an exec'd process's (0 while no fork server runs)."""
    from multiprocessing import forkserver

    import psutil

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)  # private to multiprocessing, as below
    try:
        t = psutil.Process(pid).cpu_times() if isinstance(pid, int) else None
    except psutil.Error:
        return 0.0
    return 0.0 if t is None else t.user + t.system + t.children_user + t.children_system


def file_runs_in_memory() -> list[tuple[int, int]]:
    """(address, length) runs of this process's file-backed readable pages that are in memory."""
    page = os.sysconf("SC_PAGE_SIZE")
    runs: list[tuple[int, int]] = []
    with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb") as pagemap:
        for line in maps.read().splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or not fields[5].startswith("/") or not fields[1].startswith("r"):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            pagemap.seek(start // page * 8)
            entries = array.array("Q", pagemap.read((end - start) // page * 8))
            run_start = None
            for i, entry in enumerate([*entries, 0]):
                if entry & PRESENT and run_start is None:
                    run_start = i
                elif not entry & PRESENT and run_start is not None:
                    runs.append((start + run_start * page, (i - run_start) * page))
                    run_start = None
    return runs


def map_in(runs: list[tuple[int, int]]) -> None:
    """Map RUNS' pages into this process (they are in the page cache already): one madvise a run, or a read a page
    on kernels before 5.14."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = os.sysconf("SC_PAGE_SIZE")
    for address, length in runs:
        if libc.madvise(address, length, MADV_POPULATE_READ) != 0:
            for a in range(address, address + length, page):
                ctypes.string_at(a, 1)


def _start_without_main(process: multiprocessing.process.BaseProcess) -> None:
    """Start PROCESS without multiprocessing running the caller's main module again in it: the child serves, it
    is not the caller's script (one without a main guard would run twice)."""
    main = sys.modules["__main__"]
    with _STARTING:  # the main module is the process's: two starts at once must not restore each other's
        saved = main.__dict__.pop("__file__", None), main.__dict__.get("__spec__")
        main.__spec__ = None
        try:
            process.start()
        finally:
            if saved[0] is not None:
                main.__file__ = saved[0]
            main.__spec__ = saved[1]


def _let_go_of_the_fork_server() -> None:
    """Close the ends of the fork server's and resource tracker's pipes a forked child inherits: they exit when the
    process that started them does (on EOF), which a server that outlives it (kill -9) must not hold off."""
    from multiprocessing import forkserver, resource_tracker

    for holder, name in ((forkserver._forkserver, "_forkserver_alive_fd"), (resource_tracker._resource_tracker, "_fd")):
        fd = getattr(holder, name, None)  # private to multiprocessing: a Python without them keeps both alive
        if isinstance(fd, int):
            with contextlib.suppress(OSError):
                os.close(fd)
            setattr(holder, name, None)


def run_forked(
    argv: list[str],
    log_path: str,
    env: dict[str, str],
    cores: list[int] | None,
    cgroup: CpuCgroup | None,
    stdout_path: str | None = None,
) -> None:
    """In the forked child: become what an exec'd process would be (own session, log, environment, cores, cgroup,
    command line), then run ARGV's module as `python -m` would; its output goes to STDOUT_PATH, else the log."""
    # First, while the environment is as the fork server's was: setproctitle finds the command line's memory
    # through it. It gives the server the command line an exec'd one has (`ps`, the orphan sweeps and the tests
    # find servers by it); SPT_NOENV keeps /proc/PID/environ readable, so the title fits the fork server's own
    # command line (300+ characters, the model path within the first 200).
    os.environ["SPT_NOENV"] = "1"
    import setproctitle

    setproctitle.setproctitle(" ".join(argv))
    _let_go_of_the_fork_server()
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    out = log if stdout_path is None else os.open(stdout_path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o644)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(log, 2)
    for fd in {null, log, out} - {0, 1, 2}:  # one that landed on a standard descriptor is now that descriptor
        os.close(fd)
    # Fresh streams on the new descriptors, as an exec'd process has: nothing the fork server's held (buffered, or
    # None had it started with no stdout) carries over into what the child writes.
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # TMPDIR is the trial's: the fork server's cached choice must not stand
    place = preexec(cores, cgroup)  # where Popen would put an exec'd server, before it runs anything
    if place is not None:
        place()
    map_in(resident_file_runs)  # its RSS then counts what an exec'd server's does (see resident_file_runs)
    module = argv[2]
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.submodule_search_locations is not None:  # a package runs its __main__
        module += ".__main__"
    sys.exit(importlib.import_module(module).main(argv[3:]))
