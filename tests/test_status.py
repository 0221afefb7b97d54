"""`status` without the store: a running daemon's status file carries the jobs; the database only without one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autotune.daemon_control import mark_changed, status_path
from autotune.states import JobState
from autotune.store import Store
from tests.conftest import AUTOTUNE, autotune, wait_for
from tests.stored_jobs import add_job, add_model

FROM_FILE = {"id": 4242, "model": "from-the-file", "state": "running", "trials_done": 1, "trials_total": 3}


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'status.db'}"
    Store(url)  # an up-to-date database, as on any host after its first command
    return url


@pytest.fixture
def fake_daemon(db: str):
    """A process whose command line reads as a daemon's, and its status file with a job list in it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "autotune", "daemon"])
    doc = {"pid": proc.pid, "started_at": "2026-01-01T00:00:00Z", "db": db, "metrics_port": 0}
    job = {**FROM_FILE, "best_goodput_rps": None, "waiting": None, "error": None}
    doc |= {"gate": "open", "gate_reason": None, "job": 4242, "jobs": [job], "drift": [], "jobs_at": time.time()}
    status_path(db).write_text(json.dumps(doc))
    yield doc
    proc.kill()
    proc.wait(10)
    status_path(db).unlink(missing_ok=True)


def _status(db: str) -> tuple[dict, list[str]]:
    """`status --json`'s document, and which of SQLAlchemy and psutil the command imported."""
    probe = (
        "import sys\n"
        "sys.argv = ['autotune', 'status', '--json']\n"
        "from autotune.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('IMPORTED=' + ','.join(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'psutil'})),"
        " file=sys.stderr)\n"
    )
    env = {**os.environ, "AUTOTUNE_DB_URL": db}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert "IMPORTED=" in proc.stderr, proc.stderr
    return json.loads(proc.stdout), [m for m in proc.stderr.split("IMPORTED=")[1].strip().split(",") if m]


def test_while_a_daemon_runs_status_reads_its_file_and_imports_no_database_library(db, fake_daemon):
    doc, imported = _status(db)
    assert doc["source"] == "daemon" and [j["model"] for j in doc["jobs"]] == ["from-the-file"]
    assert doc["daemon"]["pid"] == fake_daemon["pid"] and "jobs" not in doc["daemon"]
    assert imported == []


def test_after_a_command_changed_a_job_status_reads_the_store_until_the_daemon_writes_anew(db, fake_daemon):
    mark_changed(db)
    doc, imported = _status(db)
    assert doc["source"] == "store" and doc["jobs"] == [] and "sqlalchemy" in imported
    status_path(db).write_text(json.dumps({**fake_daemon, "jobs_at": time.time() + 1}))
    assert _status(db)[0]["source"] == "daemon"


def test_without_a_daemon_status_reads_the_store(db):
    status_path(db).write_text(json.dumps({"pid": 1, "jobs": [FROM_FILE], "jobs_at": time.time()}))
    doc, _ = _status(db)
    assert doc["daemon"] is None and doc["source"] == "store" and doc["jobs"] == []


def test_a_real_daemon_publishes_the_jobs_and_a_cancel_shows_at_once(db, tmp_path):
    store = Store(db)
    model_id = add_model(store)
    # Another host's job: this daemon lists it but never claims it (its fingerprint differs).
    job_id = add_job(store, model_id, "fp-of-another-host", JobState.queued)
    env = {**os.environ, "AUTOTUNE_DB_URL": db}
    with open(tmp_path / "daemon.log", "wb") as log:
        daemon = subprocess.Popen(
            [*AUTOTUNE, "daemon", "--poll-s", "0.3", "--metrics-port", "0"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        seen: dict = {}

        def published() -> bool:
            seen.update(json.loads(autotune("status", "--json", env=env).stdout))
            return seen["source"] == "daemon"

        wait_for(published, 60, "the daemon's job list")
        assert [(j["id"], j["state"]) for j in seen["jobs"]] == [(job_id, "queued")]
        assert autotune("stop", str(job_id), env=env).returncode == 0
        # At once, from the store (the daemon's list is older than the cancel) ...
        doc = json.loads(autotune("status", "--json", env=env).stdout)
        assert [(j["id"], j["state"]) for j in doc["jobs"]] == [(job_id, "cancelled")]
        # ... and soon from the daemon's file again, written anew.
        wait_for(published, 30, "the daemon's list after the cancel")
        assert [(j["id"], j["state"]) for j in seen["jobs"]] == [(job_id, "cancelled")]
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    assert not status_path(db).exists()
