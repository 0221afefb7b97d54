"""`autotune start` and `autotune pareto`: a real search on the tiny model, kept in SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from autotune.pareto import dominates
from autotune.tuner import pareto_trials

SHORT = ["--window-s", "0.5", "--warmup-s", "0.3", "--max-windows", "4"]


def autotune(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autotune.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture
def db_env(tmp_path, tiny_model):
    env = dict(os.environ)
    env["AUTOTUNE_DB_URL"] = f"sqlite:///{tmp_path / 'autotune.db'}"
    return env


def _studies(url: str) -> list[optuna.Study]:
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(url))
    return [optuna.load_study(study_name=n, storage=url) for n in names]


def test_start_tunes_defaults_first_and_keeps_a_true_pareto_set(db_env):
    proc = autotune(db_env, "start", "--model", "tiny", "--trials", "4", "--foreground", "--json", *SHORT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    front = json.loads(proc.stdout)
    (study,) = _studies(db_env["AUTOTUNE_DB_URL"])
    trials = study.get_trials()
    assert len(trials) == 4
    first = trials[0].user_attrs["config"]
    assert first["enable_batching"] is False and first["intra_op_threads"] == 0 and first["inter_op_threads"] == 0
    assert all("metrics" in t.user_attrs for t in trials)  # failed ones too, with their reason
    feasible = [
        t
        for t in trials
        if t.state == optuna.trial.TrialState.COMPLETE and all(c <= 0 for c in t.user_attrs["constraints"])
    ]
    front_numbers = {row["trial"] for row in front}
    directions = ["maximize", "minimize"]
    for t in feasible:
        dominated = any(dominates(o.values, t.values, directions) for o in feasible if o is not t)
        assert (t.number in front_numbers) == (not dominated)

    listed = autotune(db_env, "pareto", "--model", "tiny", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == front

    out = Path(db_env["AUTOTUNE_DB_URL"].removeprefix("sqlite:///")).parent / "export"
    exported = autotune(db_env, "export", "--model", "tiny", "--out", str(out), "--pick", "max-throughput")
    assert exported.returncode == 0, exported.stderr
    meta = json.loads((out / "autotune.json").read_text())
    best = max(front, key=lambda row: row["metrics"]["throughput_rps"])
    assert meta["trial"] == best["trial"] and meta["config"] == best["config"]
    assert meta["host_fingerprint"] and meta["job"].startswith("autotune/tiny/")
    again = autotune(db_env, "export", "--model", "tiny", "--out", str(out))
    assert again.returncode == 1 and "--force" in again.stderr


def test_a_second_job_warm_starts_from_the_previous_pareto_set(db_env):
    assert autotune(db_env, "start", "--model", "tiny", "--trials", "2", *SHORT).returncode == 0
    first = _studies(db_env["AUTOTUNE_DB_URL"])[0]
    proc = autotune(db_env, "start", "--model", "tiny", "--trials", "2", *SHORT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    second = _studies(db_env["AUTOTUNE_DB_URL"])[1]
    assert second.user_attrs["host_fingerprint"] == first.user_attrs["host_fingerprint"]
    assert second.trials[0].user_attrs["config"]["enable_batching"] is False  # defaults, again first
    defaults = second.trials[0].user_attrs["config"]
    carried = [t.user_attrs["config"] for t in pareto_trials(first)]
    carried = [c for c in carried if c != defaults]
    if carried:  # the previous job's non-default Pareto configs are measured right after the defaults
        assert second.trials[1].user_attrs["config"] == carried[0]


def test_pareto_of_an_untuned_model_is_a_clear_error(db_env):
    proc = autotune(db_env, "pareto", "--model", "resnet")
    assert proc.returncode == 1 and "has not been tuned yet" in proc.stderr and "Traceback" not in proc.stderr


def test_an_invalid_study_stores_nothing(db_env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "tiny"\n[budget]\ntrials = 0\n')
    proc = autotune(db_env, "start", "--study", str(bad))
    assert proc.returncode == 1
    assert f"{bad}: budget.trials: must be > 0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "autotune.db").exists() or not _studies(db_env["AUTOTUNE_DB_URL"])
