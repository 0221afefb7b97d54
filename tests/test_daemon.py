"""The daemon with real processes: one per database, crash recovery, SIGTERM, the resource gate, schedules."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest
import requests

from tests.conftest import ANY_SPREAD, AUTOTUNE, SHORT, autotune, wait_for, wait_load_flowing


@pytest.fixture
def daemon_env(plain_env):
    """A store of the test's own, and daemons that export metrics on any free port and wait briefly at the gate."""
    plain_env["AUTOTUNE_METRICS_PORT"] = "0"
    plain_env["AUTOTUNE_GATE_QUIET_S"] = "0.5"  # for daemons that `autotune start` spawns
    return plain_env


@pytest.fixture
def env(daemon_env, profiled):
    """A store holding the session's profile of tiny: the daemon's jobs plan from it instead of profiling."""
    profiled(daemon_env["AUTOTUNE_DB_URL"])
    return daemon_env


class Daemons:
    """Daemons started by a test; whatever is still alive at the end is killed with its servers."""

    def __init__(self, env, tmp_path):
        self.env, self.tmp_path, self.procs = env, tmp_path, []

    def start(self, *args):
        log = open(self.tmp_path / f"daemon{len(self.procs)}.log", "wb")
        proc = subprocess.Popen(
            [*AUTOTUNE, "daemon", "--poll-s", "0.3", "--quiet-s", "0.5", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        wait_for(lambda: daemon_up(self.env) or proc.poll() is not None, 60, "daemon up")
        return proc

    def cleanup(self):
        autotune("stop", "--daemon", env=self.env, timeout=90)  # also one that `start` spawned itself
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.fixture
def daemons(env, tmp_path):
    d = Daemons(env, tmp_path)
    yield d
    d.cleanup()


def status(env):
    proc = autotune("status", "--json", env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def job(env, job_id):
    """A job's row, read in-process: polling `autotune status` would itself be foreign CPU load for the gate."""
    with sqlite3.connect(db_path(env), timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("select * from autotune_jobs where id=?", (job_id,)).fetchone()
        done = conn.execute(
            "select count(*) from autotune_trials where job_id=? and state in ('complete','failed')", (job_id,)
        ).fetchone()[0]
    return {"state": row["state"], "waiting": row["waiting_reason"], "trigger": row["trigger"], "trials_done": done}


def jobs_with_trigger(env, trigger):
    with sqlite3.connect(db_path(env), timeout=10) as conn:
        return [r[0] for r in conn.execute("select id from autotune_jobs where trigger=?", (trigger,))]


def daemon_up(env):
    from autotune.daemon_control import status_path

    return status_path(env["AUTOTUNE_DB_URL"]).exists()


def listening_sockets(procs):
    """TCP sockets in LISTEN state of PROCS (the daemon's tree: itself, servers, load generators)."""
    found = []
    for p in procs:
        try:
            found += [c for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            continue  # a process that just exited listens on nothing
    return found


def db_path(env):
    return env["AUTOTUNE_DB_URL"].removeprefix("sqlite:///")


def running_server_pid(env):
    with sqlite3.connect(db_path(env), timeout=10) as conn:
        row = conn.execute(
            "select server_pid from autotune_trials where state='running' and server_pid is not null"
        ).fetchone()
    return row[0] if row else None


def enqueue(env, trials, *extra):
    proc = autotune("start", "--model", "tiny", "--trials", str(trials), "--detach", *extra, env=env)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip())


def trial_states(env, job_id):
    with sqlite3.connect(db_path(env), timeout=10) as conn:
        return [
            r[0] for r in conn.execute("select state from autotune_trials where job_id=? order by number", (job_id,))
        ]


@pytest.mark.slow
def test_a_job_survives_sigterm_and_kill_9_of_its_daemons(env, daemons):
    first = daemons.start()
    second = autotune("daemon", env=env, timeout=60)
    assert second.returncode == 1 and f"already running (pid {first.pid})" in second.stderr
    port = status(env)["daemon"]["metrics_port"]
    assert "autotune_gate_open 1.0" in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    listening = [c for c in psutil.Process(first.pid).net_connections("inet") if c.status == psutil.CONN_LISTEN]
    assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)

    # SIGTERM mid-trial: the daemon stops the server, hands the job back, exits within seconds.
    # One trial, TF Serving's defaults: interrupted twice, then measured (windows long enough to be caught live).
    job_id = enqueue(env, 1, "--window-s", "0.4", "--warmup-s", "0.2", "--max-windows", "4", *ANY_SPREAD)
    wait_for(lambda: running_server_pid(env), 120, "a trial with a live server")
    wait_load_flowing(psutil.Process(first.pid))  # the server is up and serving: its sockets are all open
    listening = listening_sockets([psutil.Process(first.pid), *psutil.Process(first.pid).children(recursive=True)])
    assert all(c.laddr.ip in ("127.0.0.1", "::ffff:127.0.0.1") for c in listening), listening
    stopped_at = time.monotonic()
    first.send_signal(signal.SIGTERM)
    first.wait(30)
    assert time.monotonic() - stopped_at < 30 and first.returncode == 0
    assert not daemon_up(env)
    assert job(env, job_id)["state"] == "queued"  # resumes with the next daemon
    assert trial_states(env, job_id) == ["interrupted"]

    # kill -9 mid-trial: the server is orphaned; the next daemon kills it and finishes the job.
    second = daemons.start()
    wait_for(lambda: running_server_pid(env), 120, "the resumed job's trial with a live server")
    orphan = running_server_pid(env)
    os.kill(second.pid, signal.SIGKILL)
    second.wait(10)
    assert psutil.pid_exists(orphan)  # the server outlives its daemon: it runs in its own session
    daemons.start()
    wait_for(
        lambda: not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE,
        30,
        "the orphan server killed",
    )
    wait_for(lambda: job(env, job_id)["state"] == "done", 240, "the job to finish")
    states = trial_states(env, job_id)
    assert states.count("interrupted") == 2 and states.count("complete") + states.count("failed") == 1
    assert job(env, job_id)["trials_done"] == 1
    # Optuna saw the same trials: none left RUNNING, none counted twice.
    studies = optuna.get_all_study_summaries(env["AUTOTUNE_DB_URL"])
    (study,) = [optuna.load_study(study_name=s.study_name, storage=env["AUTOTUNE_DB_URL"]) for s in studies]
    assert len(study.trials) == len(states)
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    # The interrupted defaults trial was measured again on resume: the baseline is never lost.
    complete = [t.params for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert {"enable_batching": False, "intra_op_threads": 0, "inter_op_threads": 0} in complete


@pytest.mark.slow
def test_foreign_cpu_load_closes_the_gate_and_the_job_waits(env, daemons, tmp_path):
    # Spins one core until the test has seen the gate close (bounded at 90 s), so a slow daemon start
    # cannot outlast the load it is meant to notice.
    hog = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()+90\nwhile time.time()<t: pass"])
    try:
        daemons.start("--max-foreign-cores", "0.5")
        job_id = enqueue(env, 1, *SHORT)
        wait_for(lambda: "resource gate closed" in (job(env, job_id)["waiting"] or ""), 60, "the gate to close")
        assert "foreign CPU load" in status(env)["daemon"]["gate_reason"]
        assert trial_states(env, job_id) == []  # nothing measured while the host is busy
    finally:
        hog.kill()
        hog.wait(30)
    wait_for(lambda: job(env, job_id)["state"] == "done", 120, "the job to run once the host is quiet")
    assert trial_states(env, job_id) == ["complete"]


@pytest.mark.slow
def test_start_follows_the_daemon_and_a_due_schedule_retunes_with_a_drift_report(env, daemons):
    # The retune below needs a non-empty front to re-measure: under SHORT's stability rule a trial is unstable
    # (infeasible) only if its 6 windows never hold 200 requests, which tiny's do in one or two.
    proc = autotune("start", "--model", "tiny", "--trials", "2", "--json", *SHORT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout), proc.stderr[-2000:]  # the Pareto set, once the daemon finished the job
    assert daemon_up(env) and job(env, 1)["state"] == "done"

    added = autotune("schedule", "add", "--model", "tiny", "--cron", "0 2 * * *", "--trials", "2", env=env)
    assert added.returncode == 0, added.stderr
    (schedule,) = json.loads(autotune("schedule", "list", "--json", env=env).stdout)
    assert schedule["next_run_at"].endswith("02:00:00Z")
    with sqlite3.connect(db_path(env)) as conn:  # make it due now
        conn.execute("update autotune_schedules set next_run_at = '2000-01-01 00:00:00'")
    wait_for(lambda: jobs_with_trigger(env, "schedule"), 30, "the schedule to fire")
    (retune_id,) = jobs_with_trigger(env, "schedule")
    wait_for(lambda: job(env, retune_id)["state"] == "done", 240, "the retune to finish")
    drift = [d for d in status(env)["drift"] if d["job_id"] == retune_id]
    assert drift, "the retune re-measured the stored Pareto configs"
    assert all(d["previous_job_id"] == 1 for d in drift)
    # The previous front is feasible trials only, so each re-measured config had a goodput to change from.
    assert all(d["before_goodput_rps"] for d in drift), drift
    for d in drift:
        assert d["change"] == pytest.approx(d["after_goodput_rps"] / d["before_goodput_rps"] - 1, abs=1e-3)
    report = Path(db_path(env)).parent / "report"
    assert autotune("report", "--model", "tiny", "--out", str(report), env=env).returncode == 0
    assert len(json.loads((report / "summary.json").read_text())["drift"]) == len(drift)
    assert f"Drift since job {drift[0]['previous_job_id']}" in (report / "report.html").read_text()
    (schedule,) = json.loads(autotune("schedule", "list", "--json", env=env).stdout)
    assert schedule["last_job_id"] == retune_id and schedule["next_run_at"] > "2026"

    stop = autotune("stop", "--daemon", env=env)
    assert stop.returncode == 0 and "stopped" in stop.stdout


def test_bad_schedules_and_unknown_jobs_are_one_line_errors(daemon_env):
    env = daemon_env
    bad = autotune("schedule", "add", "--model", "tiny", "--cron", "61 * * * *", env=env)
    assert bad.returncode == 1 and "invalid cron expression" in bad.stderr
    missing = autotune("schedule", "add", "--model", "/no/such/model", "--cron", "0 2 * * *", env=env)
    assert missing.returncode == 1 and "neither a built-in" in missing.stderr
    assert autotune("stop", "99", env=env).returncode == 1
    line = autotune("cron", "install", "--model", "my model", "--print", env=env).stdout
    assert line.startswith("0 2 * * * ") and "retune --model 'my model'" in line


def test_systemd_unit_quotes_paths(daemon_env):
    env = daemon_env
    unit = autotune("daemon", "--print-systemd-unit", env=env).stdout
    assert f"ExecStart={sys.executable} -m autotune.cli daemon" in unit
    assert f'Environment="AUTOTUNE_DB_URL={env["AUTOTUNE_DB_URL"]}"' in unit
