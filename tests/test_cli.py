"""CLI conventions: --version, -h, JSON on every command (errors too), jobs picked on this host, light reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from autotune.fingerprint import fingerprint, host_info
from autotune.states import JobState
from autotune.store import Store
from tests.conftest import autotune
from tests.stored_jobs import add_job, add_trial

# What a read-only command must never import: each costs more CPU than the whole command should.
HEAVY = ("tensorflow", "optuna", "numpy", "matplotlib", "plotly", "alembic", "croniter", "grpc")


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_version_and_short_help():
    version = autotune("--version")
    assert version.returncode == 0 and version.stdout.strip().startswith("autotune 0.")
    for args in (["-h"], ["bench", "-h"], ["schedule", "add", "-h"]):
        shown = autotune(*args)
        assert shown.returncode == 0 and "Usage" in shown.stdout, args


def test_every_help_page_is_whole_at_80_columns_and_names_the_study_tables_it_means():
    import typer
    from typer.testing import CliRunner

    from autotune.cli import app

    def pages(command, path):
        yield path
        for name, sub in getattr(command, "commands", {}).items():
            yield from pages(sub, [*path, name])

    runner = CliRunner()
    for path in pages(typer.main.get_command(app), []):
        shown = runner.invoke(app, [*path, "-h"], env={"COLUMNS": "80"}, terminal_width=80).output
        lines = shown.splitlines()
        assert lines[0].startswith("Usage"), path  # which ends "[ARGS]..." for a group
        cut = [line for line in lines[1:] if line.rstrip().endswith("...") or "\u2026" in line]
        assert not cut, (path, cut)
        assert max(len(line) for line in lines) <= 80, path
    assert "the study's [load] table" in runner.invoke(app, ["start", "-h"]).output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["pareto", "--model", "never-tuned"], 1, "has not been tuned yet"),
        (["export", "--job", "4242", "--out", "x"], 1, "job 4242 does not exist"),
        (["stop"], 1, "give a job id to cancel"),
        (["stop", "3", "--daemon"], 1, "give a job id to cancel"),
        (["bench", "--model", "tiny", "--window-s", "0"], 1, "--window-s must be > 0"),
        (["bench", "--model", "tiny", "--tolerance", "-1"], 1, "--tolerance must be > 0"),
        (["bench", "--model", "tiny", "--concurrency", "many"], 2, "Invalid value"),
        (["schedule", "add", "--model", "tiny", "--cron", "61 * * * *"], 1, "invalid cron expression"),
    ],
)
def test_with_json_errors_are_a_json_object_on_stdout_with_the_usual_exit_code(db, args, code, says):
    plain = autotune(*args, db=db, timeout=120)
    assert plain.returncode == code and says in plain.stderr and "Traceback" not in plain.stderr
    as_json = autotune(*args, "--json", db=db, timeout=120)
    assert as_json.returncode == code, as_json.stderr
    assert says in json.loads(as_json.stdout)["error"]
    assert "Traceback" not in as_json.stderr


@pytest.mark.slow
def test_every_command_that_prints_a_result_speaks_json(db, tmp_path):
    models = json.loads(autotune("models", "list", "--json").stdout)
    assert {m["name"] for m in models} >= {"tiny", "resnet", "mobilenet"}
    assert json.loads(autotune("db", "upgrade", "--json", db=db).stdout)["after"]
    added = json.loads(autotune("schedule", "add", "--model", "tiny", "--cron", "0 2 * * *", "--json", db=db).stdout)
    assert added["cron"] == "0 2 * * *" and added["next_run_at"]
    assert json.loads(autotune("schedule", "list", "--json", db=db).stdout) == [added]
    assert json.loads(autotune("schedule", "remove", str(added["id"]), "--json", db=db).stdout) == {
        "removed": added["id"]
    }
    assert json.loads(autotune("stop", "--daemon", "--json", db=db).stdout) == {"daemon_pid": None, "stopped": False}
    cron = json.loads(autotune("cron", "install", "--model", "tiny", "--print", "--json").stdout)
    assert "retune --model tiny" in cron["line"] and cron["installed_in"] is None


@pytest.mark.slow
def test_pareto_export_and_report_read_this_hosts_latest_job_and_another_hosts_only_by_id(db, tiny_model, tmp_path):
    store = Store(db)
    model_id = store.model(tiny_model)
    mine = add_job(store, model_id, fingerprint(host_info()), JobState.running)
    add_trial(store, mine, 0, rps=10.0, config={"enable_batching": False, "intra_op_threads": 1})
    store.finish_job(mine, JobState.done)
    # Newer, and faster: a GPU host's job in the same database must not be what this host deploys.
    theirs = add_job(store, model_id, "fp-of-a-gpu-host", JobState.running)
    add_trial(store, theirs, 0, rps=900.0, config={"enable_batching": True, "max_batch_size": 64})
    store.finish_job(theirs, JobState.done)

    (row,) = json.loads(autotune("pareto", "--model", "tiny", "--json", db=db).stdout)
    assert row["metrics"]["throughput_rps"] == 10.0
    (row,) = json.loads(autotune("pareto", "--job", str(theirs), "--json", db=db).stdout)
    assert row["metrics"]["throughput_rps"] == 900.0

    exported = autotune("export", "--model", "tiny", "--out", str(tmp_path / "deploy"), "--json", db=db)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    doc = json.loads(exported.stdout)
    assert doc["job_id"] == mine and doc["config"]["intra_op_threads"] == 1
    assert json.loads((tmp_path / "deploy" / "autotune.json").read_text())["job_id"] == mine
    assert "tfserving.args" in doc["files"] and doc["out"] == str(tmp_path / "deploy")
    # Measured on the stand-in: the export says so, in one line, and in its JSON.
    assert "local stand-in" in doc["warning"] and "warning: job" in exported.stderr

    report = autotune("report", "--job", str(theirs), "--out", str(tmp_path / "report"), "--json", db=db)
    assert report.returncode == 0, report.stdout + report.stderr
    assert json.loads(report.stdout)["job_id"] == theirs and "report.html" in json.loads(report.stdout)["files"]


def _imported(args: list[str], db: str, watch: tuple[str, ...]) -> list[str]:
    """Which of the top-level packages WATCH the CLI imported to run ARGS."""
    probe = (
        "import sys\n"
        f"sys.argv = ['autotune', *{args!r}]\n"
        "from autotune.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"seen = sorted({{m.split('.')[0] for m in sys.modules}} & set({watch!r}))\n"
        "print('IMPORTED=' + ','.join(seen), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AUTOTUNE_DB_URL": db},
    )
    assert "IMPORTED=" in proc.stderr, proc.stderr
    return [m for m in proc.stderr.split("IMPORTED=")[1].strip().split(",") if m]


@pytest.mark.parametrize(
    "args", [["status", "--json"], ["pareto", "--model", "tiny", "--json"], ["schedule", "list", "--json"], ["-h"]]
)
def test_read_only_commands_import_no_heavy_library(db, args):
    # The imports, not a timing: a `watch autotune status` loop must not read as foreign load on the host.
    Store(db)  # an up-to-date database, as on any host after its first command
    assert _imported(args, db, HEAVY) == []


def test_measuring_commands_read_signatures_and_build_requests_without_tensorflow(db, tiny_model):
    # TensorFlow's import is seconds of CPU on every bench, start and daemon start: only the server needs it.
    assert _imported(["bench", "--model", "tiny", "--dry-run", "--json"], db, ("tensorflow", "keras")) == []
