"""Several hosts on one PostgreSQL database: a real server, started by the fixture as an unprivileged cluster.

Two daemons (each with its own AUTOTUNE_HOME, as on two hosts of the same hardware) share the database:
every job is claimed exactly once; when one host dies mid-trial (SIGKILL: no hand-back, its heartbeat goes
stale) the other reclaims its job and finishes it in the same Optuna study, and no trial is lost or duplicated.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import optuna
import psutil
import pytest

from autotune.job import is_interrupted
from autotune.store import Store
from tests.conftest import AUTOTUNE, SHORT, autotune, wait_for


@pytest.fixture(scope="module")
def postgres_url(postgres_cluster: Callable[[], str]) -> str:
    return postgres_cluster()


def host_env(url: str, home: Path) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    # The foreign-load gate would see the other daemon's trials (same machine here, two hosts in production).
    env = {**os.environ, "AUTOTUNE_DB_URL": url, "AUTOTUNE_HOME": str(home), "AUTOTUNE_METRICS_PORT": "0"}
    env["AUTOTUNE_GATE_MAX_FOREIGN_CORES"] = "64"
    env["AUTOTUNE_GATE_QUIET_S"] = "0.2"
    return env


def jobs(url: str) -> dict[int, dict]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as c:
        rows = c.execute(text("select id, state, worker, study_name from autotune_jobs order by id")).all()
        trials = c.execute(
            text("select job_id, number, state, worker from autotune_trials order by job_id, number")
        ).all()
    engine.dispose()
    out = {r.id: {"state": r.state, "worker": r.worker, "study": r.study_name, "trials": []} for r in rows}
    for t in trials:
        out[t.job_id]["trials"].append((t.number, t.state, t.worker))
    return out


def test_the_schema_and_optunas_tables_live_in_postgresql(postgres_url, tmp_path):
    env = host_env(postgres_url, tmp_path / "a")
    first = autotune("db", "upgrade", env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    assert autotune("db", "upgrade", env=env, timeout=120).returncode == 0  # idempotent


def _second_host_argv() -> list[str]:
    """A daemon command that runs under another host name (a UTS namespace) where that is allowed."""
    probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        return []
    return ["unshare", "--uts", "sh", "-c", 'hostname host-b && exec "$0" "$@"']


@pytest.mark.slow
def test_two_hosts_share_jobs_and_a_dead_hosts_job_finishes_on_the_other_in_the_same_study(
    postgres_url, tmp_path, tiny_model, profiled
):
    envs = [host_env(profiled(postgres_url), tmp_path / name) for name in ("host-a", "host-b")]
    for env in envs:  # the tiny model cache is shared: each "host" would build its own otherwise
        (Path(env["AUTOTUNE_HOME"]) / "models").symlink_to(tiny_model.base_path.parent)
    procs: list[subprocess.Popen] = []

    def start_daemon(env: dict, prefix: list[str]) -> subprocess.Popen:
        log = open(Path(env["AUTOTUNE_HOME"]) / "daemon.log", "ab")
        argv = [*AUTOTUNE, "daemon", "--poll-s", "0.3", "--quiet-s", "0.2"]
        proc = subprocess.Popen(
            [*prefix, *argv, "--stale-after-s", "10"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        procs.append(proc)
        home = Path(env["AUTOTUNE_HOME"])
        wait_for(lambda: list(home.glob("daemon-*.json")) or proc.poll() is not None, 60, "the daemon up")
        assert proc.poll() is None, (home / "daemon.log").read_text()[-2000:]
        return proc

    def enqueue(env: dict, trials: int) -> int:
        proc = autotune("start", "--model", "tiny", "--trials", str(trials), "--detach", *SHORT, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout)

    try:
        daemons = [start_daemon(envs[0], []), start_daemon(envs[1], _second_host_argv())]
        long_job = enqueue(envs[0], 2)  # the second trial is the one the dead host leaves behind

        def mid_second_trial() -> bool:
            done = any(t[1] == "complete" for t in jobs(postgres_url)[long_job]["trials"])
            return done and running_trial(postgres_url, long_job) is not None

        wait_for(mid_second_trial, 240, "the long job measuring its second trial")
        worker, _ = running_trial(postgres_url, long_job) or ("", None)
        victim = next(d for d in daemons if worker.endswith(f":{d.pid}"))
        survivor = next(d for d in daemons if d is not victim)
        # That host loses power mid-trial: the daemon, its server and its load generator all stop at once,
        # with no hand-back; the only sign left is a heartbeat gone silent.
        os.kill(victim.pid, signal.SIGSTOP)  # frozen first, so it cannot start a child while we list them
        tree = psutil.Process(victim.pid).children(recursive=True)
        for proc in [victim, *tree]:
            with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
                proc.kill()
        victim.wait(10)
        psutil.wait_procs(tree, timeout=10)
        # Enqueued where a daemon still runs: `start` on the dead host's home would start a new daemon there.
        survivor_env = envs[daemons.index(survivor)]
        short_jobs = [enqueue(survivor_env, 1)]
        wait_for(lambda: all(j["state"] == "done" for j in jobs(postgres_url).values()), 300, "every job done")
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)

    state = jobs(postgres_url)
    long = state[long_job]
    measured = [(n, w) for n, s, w in long["trials"] if s in ("complete", "failed")]
    numbers = [n for n, _ in measured]
    assert len(numbers) == 2 and len(set(numbers)) == 2  # none lost, none twice
    assert [s for _, s, _ in long["trials"]].count("interrupted") == 1  # the trial the dead host was measuring
    assert {w.rsplit(":", 1)[1] for _, w in measured} == {str(victim.pid), str(survivor.pid)}  # both measured it
    # Optuna's view of the same study: the same finished trial numbers, the interrupted one marked as such.
    study = optuna.load_study(study_name=long["study"], storage=postgres_url)
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert sorted(t.number for t in study.trials if not is_interrupted(t)) == sorted(numbers)
    for job_id in short_jobs:  # claimed exactly once each
        assert state[job_id]["state"] == "done" and [s for _, s, _ in state[job_id]["trials"]] == ["complete"]
    # Either host reads any front from the shared database (under SHORT's stability rule tiny's trials are stable
    # once their windows hold 200 requests, so neither front is empty).
    store = Store(postgres_url)
    for args in (["--model", "tiny"], ["--job", str(long_job)]):
        listed = autotune("pareto", *args, "--json", env=envs[1], timeout=120)
        assert listed.returncode == 0, listed.stderr
        job = store.jobs_of("tiny")[-1] if args[0] == "--model" else store.job(long_job)
        assert json.loads(listed.stdout) == store.job_front(job) != []


def running_trial(url: str, job_id: int) -> tuple[str, int] | None:
    """(worker, server pid) of the job's trial being measured now, once its server is up."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as c:
        row = c.execute(
            text("select worker, server_pid from autotune_trials where job_id=:j and state='running'"), {"j": job_id}
        ).first()
    engine.dispose()
    return (row.worker, row.server_pid) if row is not None and row.server_pid else None
