"""`autotune start` and `autotune pareto`: a real search on the tiny model, kept in SQLite."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import optuna
import psutil
import pytest

from autotune.pareto import dominates
from autotune.store import Store
from tests.conftest import AUTOTUNE, SHORT, autotune, wait_load_flowing


@pytest.fixture
def db_env(plain_env, profiled):
    """A store holding the session's profile of tiny: jobs plan from it instead of profiling."""
    profiled(plain_env["AUTOTUNE_DB_URL"])
    return plain_env


def _studies(url: str) -> list[optuna.Study]:
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(url))
    return [optuna.load_study(study_name=n, storage=url) for n in names]


@pytest.mark.slow
def test_start_tunes_defaults_first_keeps_a_true_pareto_set_and_the_next_job_warm_starts(db_env):
    proc = autotune(
        "start", "--model", "tiny", "--trials", "3", "--foreground", "--json", *SHORT, env=db_env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    front = json.loads(proc.stdout)
    url = db_env["AUTOTUNE_DB_URL"]
    job = Store(url).jobs_of("tiny")[-1]
    assert job.state == "done" and job.finished_at is not None
    assert [t.number for t in job.trials] == [0, 1, 2]
    first = job.trials[0].config
    assert first["enable_batching"] is False and first["intra_op_threads"] == 0 and first["inter_op_threads"] == 0
    for t in job.trials:  # failed ones too, with their reason
        assert t.state in ("complete", "failed") and t.finished_at is not None
        assert t.server_pid and t.argv
        assert t.state == "complete" or t.failure_reason
    measured = [t for t in job.trials if t.state == "complete"]
    assert measured and all(level["windows"] for t in measured for level in t.levels)  # every window is kept
    feasible = [t for t in measured if t.feasible]
    front_numbers = {row["trial"] for row in front}
    directions = ["maximize", "minimize"]
    for t in feasible:
        dominated = any(dominates(o.objective_values, t.objective_values, directions) for o in feasible if o is not t)
        assert (t.number in front_numbers) == (not dominated)
    assert not front_numbers - {t.number for t in feasible}

    # Optuna's study (what the sampler and optuna-dashboard see) agrees with our rows.
    (study,) = _studies(url)
    assert study.study_name == job.study_name
    assert [t.state.name for t in study.trials] == ["COMPLETE" if t.state == "complete" else "FAIL" for t in job.trials]

    listed = autotune("pareto", "--model", "tiny", "--json", env=db_env, timeout=600)
    assert listed.returncode == 0 and json.loads(listed.stdout) == front

    out = Path(url.removeprefix("sqlite:///")).parent / "export"
    exported = autotune(
        "export", "--model", "tiny", "--out", str(out), "--pick", "max-throughput", env=db_env, timeout=600
    )
    assert exported.returncode == 0, exported.stderr
    meta = json.loads((out / "autotune.json").read_text())
    best = max(front, key=lambda row: row["metrics"]["throughput_rps"])
    assert meta["trial"] == best["trial"] and meta["config"] == best["config"]
    assert meta["host_fingerprint"] == job.host.fingerprint and meta["job_id"] == job.id
    assert meta["model"]["content_hash"] == job.model.content_hash
    again = autotune("export", "--model", "tiny", "--out", str(out), env=db_env, timeout=600)
    assert again.returncode == 1 and "--force" in again.stderr

    report_dir = out.parent / "report"
    reported = autotune("report", "--model", "tiny", "--out", str(report_dir), env=db_env, timeout=600)
    assert reported.returncode == 0, reported.stderr
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["job_id"] == job.id and summary["trials"] == 3
    assert (report_dir / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plotly" in (report_dir / "pareto.html").read_text()
    assert len((report_dir / "trials.csv").read_text().strip().splitlines()) == 1 + 3

    # A second job of the same model on the same host measures the defaults, then the previous front.
    proc = autotune("start", "--model", "tiny", "--trials", "2", "--foreground", *SHORT, env=db_env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    second = Store(url).jobs_of("tiny")[-1]
    assert second.id != job.id and second.host_id == job.host_id and second.model_id == job.model_id
    defaults = second.trials[0].config
    assert defaults["enable_batching"] is False and defaults["intra_op_threads"] == 0
    # Then the first job's front (which configs it holds is the measurement's to say; the order on fixed results
    # is test_model_seeds' warm-start test).
    carried = [row["config"] for row in front if row["config"] != defaults][: len(second.trials) - 1]
    assert [t.config for t in second.trials[1 : 1 + len(carried)]] == carried


@pytest.mark.slow
def test_ctrl_c_during_start_cancels_the_job_and_keeps_what_was_measured(db_env):
    url = db_env["AUTOTUNE_DB_URL"]
    args = ["start", "--model", "tiny", "--trials", "5", "--window-s", "3", "--max-windows", "10", "--foreground"]
    # As from a terminal: a suite started in the background (`pytest &`) has SIGINT ignored, and children inherit it.
    proc = subprocess.Popen(
        [*AUTOTUNE, *args],
        env=db_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _running_trial_with_server(url):
            time.sleep(0.5)
        assert _running_trial_with_server(url), "no trial started within 120 s"
        wait_load_flowing(psutil.Process(proc.pid))  # mid-measurement
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr.decode()[-2000:]
    job = Store(url).jobs_of("tiny")[-1]
    assert job.state == "cancelled"
    assert job.trials[-1].state == "interrupted" and job.trials[-1].failure_reason == "interrupted"
    (study,) = _studies(url)
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)
    # Every trial that ran is in both stores; the configs planned after it stay WAITING, never run.
    ran = [t for t in study.trials if t.state != optuna.trial.TrialState.WAITING]
    assert [t.number for t in ran] == [t.number for t in job.trials]


def _running_trial_with_server(url: str) -> bool:
    import sqlite3

    path = url.removeprefix("sqlite:///")
    if not Path(path).exists():
        return False
    try:
        with sqlite3.connect(path, timeout=5) as conn:
            rows = conn.execute("select 1 from autotune_trials where state='running' and server_pid is not null")
            return rows.fetchone() is not None
    except sqlite3.OperationalError:  # tables not created yet
        return False


def test_pareto_of_an_untuned_model_is_a_clear_error(plain_env):
    proc = autotune("pareto", "--model", "resnet", env=plain_env, timeout=600)
    assert proc.returncode == 1 and "has not been tuned yet" in proc.stderr and "Traceback" not in proc.stderr


def test_an_invalid_study_stores_nothing(plain_env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "tiny"\n[budget]\ntrials = 0\n')
    proc = autotune("start", "--study", str(bad), env=plain_env, timeout=600)
    assert proc.returncode == 1
    assert f"{bad}: budget.trials: must be > 0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "autotune.db").exists() or not _studies(plain_env["AUTOTUNE_DB_URL"])
