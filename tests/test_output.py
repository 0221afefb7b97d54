"""Output that reads in a log: errors and notes one line each, tables whole when stdout is a pipe, no bars."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from autotune import progress, tables
from autotune.fingerprint import fingerprint, host_info
from autotune.states import JobState
from autotune.store import Store
from tests.conftest import autotune
from tests.stored_jobs import add_job, add_model, add_trial

# A pipe 80 columns wide, as cron or `| tee log` gives: rich cuts cells to fit it unless told otherwise.
LOG = {"COLUMNS": "80", "PATH": "/nonexistent"}
# The knobs of a config long enough that a table at 80 columns could never show them whole.
LONG_CONFIG = {
    "enable_batching": True,
    "max_batch_size": 64,
    "batch_timeout_micros": 20000,
    "num_batch_threads": 2,
    "max_enqueued_batches": 100,
    "intra_op_threads": 2,
}


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'out.db'}"


@pytest.fixture
def bad_requests(tmp_path: Path) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instances": [[1, 2]]}\n')
    return path


HOSTILE = [
    ["bench", "--model", "/no/such/model"],
    ["bench", "--model", "tiny", "--set", "cpus=512"],
    ["bench", "--model", "tiny", "--set", "nope=1"],
    ["bench", "--model", "tiny", "--concurrency", "abc"],
    ["bench", "--model", "tiny", "--bogus"],
    ["bench", "--model", "tiny", "--concurrency", "4", "--rate", "10"],
    ["compare", "--model", "/no/such/model"],
    ["compare", "--model", "tiny", "--repeats", "1"],
    ["start", "--model", "/no/such/model", "--detach"],
    ["start", "--model", "tiny", "--trials", "0", "--detach"],
    ["models", "optimize", "tiny", "--out", "x", "--variant", "nope"],
]


@pytest.mark.slow
@pytest.mark.parametrize("args", HOSTILE, ids=lambda a: " ".join(a))
def test_an_input_error_is_one_line_on_stderr_before_any_backend_note(args):
    proc = autotune(*args, env=LOG, timeout=120)
    assert proc.returncode in (1, 2), proc.stderr
    lines = proc.stderr.strip().splitlines()
    # Exactly one line: no backend note before it (input is checked first), no usage block, no box, no traceback.
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("args", HOSTILE[:5], ids=lambda a: " ".join(a))
def test_under_json_an_input_error_is_one_json_object_and_nothing_on_stderr(args):
    proc = autotune(*args, "--json", env=LOG, timeout=120)
    assert proc.returncode in (1, 2)
    assert proc.stderr == "" and set(json.loads(proc.stdout)) == {"error"}
    assert proc.stdout.count("\n") == 1


def test_a_bad_request_file_is_one_line_for_bench_and_start(bad_requests):
    for args in (["bench", "--model", "tiny"], ["start", "--model", "tiny", "--detach"]):
        proc = autotune(*args, "--requests", str(bad_requests), env=LOG, timeout=300)
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines() == [
            f"error: {bad_requests}: line 1: input 'inputs' has shape (1, 2); the signature takes (-1, 32)"
        ]


def test_the_backend_note_is_one_short_line_said_once_and_quiet_silences_it(tiny_model):
    args = ["bench", "--model", str(tiny_model.base_path), "--dry-run"]
    said = autotune(*args, env=LOG)
    assert said.returncode == 0, said.stderr
    notes = [ln for ln in said.stderr.splitlines() if ln.startswith("backend")]
    assert notes == ["backend: local stand-in (no tensorflow_model_server on PATH; docker not on PATH)"]
    assert len(notes[0]) <= 100
    for quiet in (["--quiet", *args], [*args, "--quiet"]):  # before or after the command
        silent = autotune(*quiet, env=LOG)
        assert silent.returncode == 0 and "backend" not in silent.stderr, silent.stderr
        assert "--model_name=tiny" in silent.stdout


def _stored_front(db: str, trials: int = 3) -> int:
    """A done job of tiny on this host whose trials have long configs: what `pareto` shows."""
    store = Store(db)
    model_id = add_model(store)
    job = add_job(store, model_id, fingerprint(host_info()), JobState.running)
    for n in range(trials):
        config = {**LONG_CONFIG, "max_batch_size": 2 ** (n + 3)}
        add_trial(store, job, n, rps=100.0 + 50 * n, p99=5.0 + 3 * n, config=config)
    store.finish_job(job, JobState.done)
    return job


def test_in_a_pipe_the_pareto_table_is_whole_aligned_text(db):
    _stored_front(db)
    proc = autotune("pareto", "--model", "tiny", env=LOG, db=db)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout and "─" not in proc.stdout and "│" not in proc.stdout
    # Every knob of every front row whole, however long the line.
    for n in range(3):
        assert f"enable_batching=True max_batch_size={2 ** (n + 3)} batch_timeout_micros=20000" in proc.stdout
    lines = proc.stdout.splitlines()
    header = next(ln for ln in lines if ln.startswith("trial"))
    assert max(len(ln) for ln in lines) > 80 and "vs defaults" in header
    assert all("…" not in ln for ln in proc.stderr.splitlines())


def test_plain_prints_the_table_as_tsv(db):
    _stored_front(db)
    proc = autotune("pareto", "--model", "tiny", "--plain", env=LOG, db=db)
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.strip().splitlines()
    assert header.split("\t")[:2] == ["trial", "config"]
    assert len(rows) == 3 and all(len(r.split("\t")) == len(header.split("\t")) for r in rows)
    assert {r.split("\t")[0] for r in rows} == {"0", "1", "2"}


def test_following_a_job_in_a_log_is_one_plain_line_per_trial_and_no_bar(db):
    job = _stored_front(db, trials=4)
    proc = autotune("follow", str(job), env=LOG, db=db)
    assert proc.returncode == 0, proc.stderr
    trial_lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("trial ")]
    assert [ln.split(":")[0] for ln in trial_lines] == [f"trial {n}" for n in range(4)]
    assert all("max_batch_size=" in ln and "-> ok" in ln for ln in trial_lines)
    assert not any(ch in proc.stderr for ch in "━…\r\x1b")


def test_show_aligns_numbers_right_and_keeps_every_cell_whole(capsys, monkeypatch):
    monkeypatch.setattr(tables, "PLAIN", False)
    table = Table(title="t")
    table.add_column("name")
    table.add_column("rps", justify="right")
    table.add_row("a" * 120, "1.5")
    table.add_row("b\tc\nd", "100.25")
    tables.show(table)
    title, header, first, second = capsys.readouterr().out.splitlines()
    assert title == "t" and first == "a" * 120 + "     1.5"
    assert second.startswith("b c d ") and second.endswith("  100.25") and len(second) == len(first)
    assert header.endswith("   rps")


@pytest.mark.parametrize("terminal", [True, False])
def test_only_a_terminal_gets_a_progress_bar(monkeypatch, terminal):
    # Under cron rich would print the bar's last frame, cut at 80 columns: there the trial lines are all.
    monkeypatch.setattr(progress, "err", Console(file=io.StringIO(), force_terminal=terminal))
    assert isinstance(progress._bar(), Progress if terminal else progress._Lines)


def test_the_cli_offers_every_backend_and_auto():
    from autotune.servers.backends import BACKENDS
    from autotune.servers.names import BACKEND_NAMES

    assert set(BACKEND_NAMES) == {"auto", *BACKENDS} and BACKEND_NAMES[0] == "auto"


def test_a_compare_table_shows_each_metrics_detectable_effect_and_what_the_verdict_means(capsys, monkeypatch):
    from autotune.compare import Side, judge
    from autotune.knobs import ServingConfig
    from autotune.measure import TrialResult

    def side(rps: list[float]) -> Side:
        runs = [
            TrialResult("tiny", "local", "grpc", ServingConfig(), [], {"throughput_rps": r, "latency_p99_ms": 10.0})
            for r in rps
        ]
        return Side(ServingConfig(), runs)

    monkeypatch.setattr(tables, "out", Console(file=io.StringIO(), width=200, force_terminal=False))
    result = judge(side([100, 120, 90, 110]), side([105, 95, 115, 100]))
    tables.print_comparison(result)
    text = capsys.readouterr().out + tables.out.file.getvalue()
    assert "mde" in text and f"{result.metrics['throughput_rps'].mde:.1%}" in text
    assert result.message() in text and "could not be detected" in text
