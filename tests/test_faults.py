"""Faults injected from outside: a database held by another writer, full and read-only filesystems.

Full and read-only filesystems are real: a small tmpfs mounted for the test (root in the sandbox can
mount). Where mounting is not allowed the tests say so and skip; nothing is simulated.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autotune.errors import AutotuneError
from autotune.export import write_export
from tests.conftest import AUTOTUNE, SHORT, autotune, our_processes, wait_no_processes


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs of our own, unmounted afterwards."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not permitted'}): no real full disk")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(fs: Path) -> Path:
    """Write until the filesystem is full; the filler file is returned so a test can free the space."""
    filler = fs / "filler"
    try:
        with open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError as exc:  # opening can fail already, if what the test wrote filled it
        assert exc.errno == errno.ENOSPC
    return filler


@pytest.mark.slow
def test_a_writer_holding_the_database_for_seconds_is_waited_for(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    assert autotune("db", "upgrade", db=url, timeout=120).returncode == 0
    holder = sqlite3.connect(tmp_path / "a.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another writer (a second autotune, a script) mid-transaction
    threading.Timer(3.0, lambda: holder.execute("COMMIT")).start()
    started = time.monotonic()
    proc = autotune("schedule", "add", "--model", "tiny", "--cron", "0 2 * * *", db=url, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started >= 2.5  # it waited for the lock instead of failing
    assert len(json.loads(autotune("schedule", "list", "--json", db=url, timeout=120).stdout)) == 1
    holder.close()


@pytest.mark.slow
def test_a_lock_held_past_the_busy_timeout_is_a_one_line_error_and_nothing_is_half_written(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    assert autotune("db", "upgrade", db=url, timeout=120).returncode == 0
    holder = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        # Its own process: the busy timeout is read as a process first opens the database.
        proc = autotune(
            "schedule", "add", "--model", "tiny", "--cron", "0 2 * * *",
            db=url, env={"AUTOTUNE_DB_BUSY_TIMEOUT_S": "1"}, timeout=120, own_process=True,
        )  # fmt: skip
        assert "locked" in one_line_error(proc)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert json.loads(autotune("schedule", "list", "--json", db=url, timeout=120).stdout) == []


def test_a_full_disk_under_the_database_is_a_one_line_error_and_the_database_survives(small_fs):
    url = f"sqlite:///{small_fs / 'a.db'}"
    assert autotune("db", "upgrade", db=url, timeout=120).returncode == 0
    assert autotune("schedule", "add", "--model", "tiny", "--cron", "0 2 * * *", db=url, timeout=120).returncode == 0
    filler = fill(small_fs)
    error = one_line_error(autotune("schedule", "add", "--model", "tiny", "--cron", "0 3 * * *", db=url, timeout=120))
    assert "full" in error or "space" in error
    filler.unlink()
    with sqlite3.connect(small_fs / "a.db") as conn:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    listed = json.loads(autotune("schedule", "list", "--json", db=url, timeout=120).stdout)
    assert len(listed) == 1  # the first write is intact


def test_a_read_only_database_is_a_one_line_error_for_writes(small_fs):
    url = f"sqlite:///{small_fs / 'a.db'}"
    # Commands of their own: the file system remounts only once nothing holds the database open.
    assert autotune("db", "upgrade", db=url, timeout=120, own_process=True).returncode == 0
    added = autotune("schedule", "add", "--model", "tiny", "--cron", "0 2 * * *", db=url, own_process=True)
    assert added.returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        one_line_error(autotune("schedule", "add", "--model", "tiny", "--cron", "0 3 * * *", db=url, own_process=True))
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    assert len(json.loads(autotune("schedule", "list", "--json", db=url, own_process=True).stdout)) == 1


def test_an_export_onto_a_full_disk_fails_cleanly_and_keeps_the_previous_export(small_fs):
    target = small_fs / "export"
    write_export({"a.txt": "old", "docker-run.sh": "#!/bin/sh\n"}, {"trial": 1}, target)
    fill(small_fs)
    with pytest.raises(AutotuneError) as raised:
        write_export({"a.txt": "x" * 200_000, "docker-run.sh": "#!/bin/sh\n"}, {"trial": 2}, target)
    assert "No space left" in str(raised.value) and "\n" not in str(raised.value)
    assert (target / "a.txt").read_text() == "old"  # the deployment's files were not touched
    assert sorted(p.name for p in small_fs.iterdir()) == ["export", "filler"]  # no staging left behind


@pytest.mark.slow
def test_a_database_deleted_under_a_running_job_stops_it_with_one_line_and_no_orphans(tmp_path, profiled):
    before = {p.pid for p in our_processes()}
    path = tmp_path / "a.db"
    env = {**os.environ, "AUTOTUNE_DB_URL": profiled(f"sqlite:///{path}")}
    job = subprocess.Popen(
        [*AUTOTUNE, "start", "--model", "tiny", "--trials", "4", "--foreground", *SHORT],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def completed() -> int:
        try:
            with sqlite3.connect(path, timeout=5) as conn:
                return conn.execute("select count(*) from autotune_trials where state='complete'").fetchone()[0]
        except sqlite3.Error:
            return 0

    deadline = time.monotonic() + 180
    while completed() < 1 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.3)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    _, stderr = job.communicate(timeout=180)
    assert job.returncode == 1, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "was deleted while autotune was using it" in stderr.strip().splitlines()[-1]
    assert not wait_no_processes(ignore=before)


def _wrapper(tmp_path: Path, name: str, body: str) -> Path:
    """A stand-in 'tensorflow_model_server' for the tfserving backend: a shell script around ours."""
    script = tmp_path / name
    script.write_text(f'#!/bin/sh\n{body}\nexec {sys.executable} -m autotune.servers.local "$@"\n')
    script.chmod(0o755)
    return script


def _bench_with(server: Path) -> dict:
    proc = autotune(
        "bench", "--model", "tiny", "--concurrency", "2", "--json",
        "--backend", "tfserving", "--server-binary", str(server),
        "--window-s", "0.3", "--warmup-s", "0.2", "--max-windows", "3",
        timeout=240,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def test_a_server_that_refuses_its_flags_is_server_start_failed(tmp_path, tiny_model):
    before = {p.pid for p in our_processes()}
    server = _wrapper(tmp_path, "server", 'set -- "$@" --no_such_flag=1')
    result = _bench_with(server)
    assert result["failure_reason"] == "server_start_failed"
    assert "no_such_flag" in result["failure_message"]
    assert not wait_no_processes(ignore=before)


# Measured on the dev VM (TF 2.x CPU wheel): under 0.8 GB of address space TensorFlow cannot even map
# libtensorflow_cc ("failed to map segment"); at 1.2 GB Python raises MemoryError while importing; a serving
# tiny model needs about 2.6 GB. 0.8 GB sits well inside the failing range.
MEMORY_LIMIT_KB = 800_000


def test_a_server_under_a_memory_limit_it_cannot_meet_is_reported_as_oom(tmp_path, tiny_model):
    before = {p.pid for p in our_processes()}
    server = _wrapper(tmp_path, "server", f"ulimit -v {MEMORY_LIMIT_KB}")
    result = _bench_with(server)
    assert result["failure_reason"] == "oom", result["failure_message"]
    assert result["server_log_tail"]
    assert not wait_no_processes(ignore=before)
