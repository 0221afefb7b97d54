"""The store: our tables beside Optuna's in one database, created and migrated by Alembic."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from autotune.errors import AutotuneError
from autotune.store import Store, db
from autotune.store.schema import Base
from tests.conftest import autotune

OUR_TABLES = {"autotune_hosts", "autotune_models", "autotune_jobs", "autotune_trials", "autotune_pareto_snapshots"}


def tables(path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}


def test_db_upgrade_creates_our_tables_on_an_empty_database_and_is_idempotent(tmp_path):
    path = tmp_path / "a.db"
    url = f"sqlite:///{path}"
    first = autotune("db", "upgrade", db=url, timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"from empty to {db.head_revision()}" in first.stdout
    assert OUR_TABLES | {"autotune_alembic_version"} <= tables(path)
    again = autotune("db", "upgrade", db=url, timeout=120)
    assert again.returncode == 0 and f"already at {db.head_revision()}" in again.stdout


def test_our_migrations_share_a_database_optuna_already_wrote(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    study = optuna.create_study(study_name="theirs", storage=url)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with sqlite3.connect(tmp_path / "shared.db") as conn:
        optuna_version = conn.execute("select version_num from alembic_version").fetchall()

    assert db.upgrade(url) == (None, db.head_revision())

    with sqlite3.connect(tmp_path / "shared.db") as conn:
        assert conn.execute("select version_num from alembic_version").fetchall() == optuna_version
        assert conn.execute("select version_num from autotune_alembic_version").fetchall() == [(db.head_revision(),)]
    assert len(optuna.load_study(study_name="theirs", storage=url).trials) == 2
    # Optuna can still open (and would still migrate) its own tables after ours were added.
    optuna.storages.RDBStorage(url)


def test_the_migrations_produce_exactly_the_orm_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    db.upgrade(url)
    with db.engine(url).connect() as conn:
        ours = lambda o, n, t, r, c: t != "table" or n.startswith("autotune_")  # noqa: E731
        ctx = MigrationContext.configure(conn, opts={"include_object": ours, "version_table": db.VERSION_TABLE})
        assert compare_metadata(ctx, Base.metadata) == []


def test_downgrade_to_base_and_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    db.upgrade(url)
    cfg = db.alembic_config(url)
    command.downgrade(cfg, "base")
    assert not OUR_TABLES & tables(tmp_path / "a.db")
    command.upgrade(cfg, "head")
    assert OUR_TABLES <= tables(tmp_path / "a.db")


def test_sqlite_database_is_wal_and_user_only(tmp_path):
    path = tmp_path / "new" / "a.db"
    Store(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_database_from_a_newer_autotune_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    db.upgrade(url)
    with sqlite3.connect(tmp_path / "a.db") as conn:
        conn.execute("update autotune_alembic_version set version_num = '9999'")
    with pytest.raises(AutotuneError, match="newer than this autotune"):
        db.upgrade(url)


def test_an_unusable_database_is_one_line_and_exit_1(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = autotune("db", "upgrade", db=f"sqlite:///{blocker}/a.db", timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    proc = autotune("db", "upgrade", db=f"sqlite:///{garbage}", timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "database" in proc.stderr


def test_one_optuna_storage_serves_every_job_of_a_process(tmp_path):
    # A storage per job is an engine per job whose statements SQLAlchemy compiles afresh: a daemon grew with each.
    url = f"sqlite:///{tmp_path / 'a.db'}"
    first = db.optuna_storage(url)
    optuna.create_study(study_name="autotune/tiny/1", storage=first, directions=["maximize"])
    assert db.optuna_storage(url) is first
    assert db.optuna_storage(f"sqlite:///{tmp_path / 'b.db'}") is not first
    assert [s.study_name for s in optuna.get_all_study_summaries(db.optuna_storage(url))] == ["autotune/tiny/1"]


def test_every_transaction_of_a_process_uses_one_session_class(tmp_path):
    # A sessionmaker per transaction made a Session subclass each time; SQLAlchemy means one per process and URL.
    url = f"sqlite:///{tmp_path / 'a.db'}"
    first, second = db.session(url), db.session(url)
    try:
        assert type(first) is type(second)
    finally:
        first.close()
        second.close()


def test_optuna_dashboard_opens_our_database(tmp_path):
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is in the test extra; not installed here")
    import requests

    from autotune.measure import free_ports

    url = f"sqlite:///{tmp_path / 'a.db'}"
    db.upgrade(url)  # our tables first, then Optuna's, as `autotune start` does
    study = optuna.create_study(study_name="autotune/tiny/x", storage=db.optuna_storage(url), directions=["maximize"])
    study.optimize(lambda t: t.suggest_int("max_batch_size", 1, 8), n_trials=2)
    (port,) = free_ports(1)
    dash = subprocess.Popen(
        [Path(sys.executable).parent / "optuna-dashboard", url, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        names = None
        for _ in range(60):
            try:
                reply = requests.get(f"http://127.0.0.1:{port}/api/studies", timeout=2)
                names = [s["study_name"] for s in reply.json()["study_summaries"]]
                break
            except requests.RequestException:
                time.sleep(0.5)
        assert names == ["autotune/tiny/x"]
    finally:
        os.killpg(dash.pid, signal.SIGKILL)
        dash.wait(timeout=10)


def test_upgrading_a_database_with_jobs_keeps_them_and_a_failed_migration_leaves_nothing_half_done(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    db.engine(url)
    command.upgrade(db.alembic_config(url), "0001")
    with sqlite3.connect(tmp_path / "a.db") as conn:
        conn.execute("insert into autotune_hosts values (1, 'fp', '{}', '2026-01-01', '2026-01-01')")
        conn.execute("insert into autotune_models values (1, 'm', '/m', 1, 'h', '{}', '2026-01-01')")
        conn.execute(
            "insert into autotune_jobs (id, model_id, host_id, study_name, state, trigger, study, settings, backend,"
            " trials_total, minutes, created_at) values (1, 1, 1, 's', 'done', 'manual', '{}', '{}', 'local', 1, 1,"
            " '2026-01-01')"
        )
        conn.execute(
            "insert into autotune_trials (id, job_id, number, state, config, metrics, feasible, levels, argv,"
            " started_at) values (1, 1, 0, 'complete', '{}', '{}', 1, '[]', '[]', '2026-01-01')"
        )
    assert db.upgrade(url) == ("0001", db.head_revision())
    with sqlite3.connect(tmp_path / "a.db") as conn:
        assert conn.execute("select state, cancel_requested from autotune_jobs").fetchall() == [("done", 0)]
        assert conn.execute("select count(*) from autotune_trials").fetchone() == (1,)
        assert conn.execute("pragma foreign_key_check").fetchall() == []

    # DDL is transactional: a migration that fails half-way leaves the schema as it was.
    broken = f"sqlite:///{tmp_path / 'b.db'}"
    db.engine(broken)
    command.upgrade(db.alembic_config(broken), "0001")
    with sqlite3.connect(tmp_path / "b.db") as conn:
        conn.execute("create table autotune_drift_checks (x int)")  # 0002 will collide with this
    with pytest.raises(AutotuneError):
        db.upgrade(broken)
    assert "autotune_schedules" not in tables(tmp_path / "b.db")
    assert db.current_revision(broken) == "0001"
