"""Where results live: one database, SQLite under $AUTOTUNE_HOME by default.

AUTOTUNE_DB_URL overrides it with any SQLAlchemy URL (PostgreSQL for several
hosts). Optuna's tables live in it too, so `optuna-dashboard <url>` opens
autotune's studies. Our schema is created and evolved by Alembic (migrations/)
with its own version table; every command upgrades a fresh database itself.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, column, create_engine, event, select, table, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from autotune.errors import AutotuneError
from autotune.paths import db_url as db_url  # re-exported: the store and its callers ask it here

# Alembic and Optuna cost a read-only command (status, pareto) more than everything else it does together:
# they are imported only where a migration runs or a study is opened.
if TYPE_CHECKING:
    import optuna
    from alembic.config import Config

VERSION_TABLE = "autotune_alembic_version"
BUSY_TIMEOUT_S = 30.0


def busy_timeout_s() -> float:
    """How long to wait for another writer: AUTOTUNE_DB_BUSY_TIMEOUT_S, default 30 s."""
    raw = os.environ.get("AUTOTUNE_DB_BUSY_TIMEOUT_S")
    if raw is None:
        return BUSY_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise AutotuneError(f"AUTOTUNE_DB_BUSY_TIMEOUT_S must be seconds in 0..3600, got {raw!r}")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


def db_error(url: str, exc: BaseException) -> AutotuneError:
    """A one-line error for a database that is locked, missing, read-only or unreachable."""
    return AutotuneError(f"database {_redacted(url)}: {_first_line(exc)}")


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a malformed URL is shown as given
        return url


@cache
def sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Wait for a busy writer (another autotune, optuna-dashboard) instead of failing at once.
        return {"connect_args": {"timeout": busy_timeout_s()}}
    return {"pool_pre_ping": True}


@cache
def engine(url: str) -> Engine:
    """One engine per URL per process; SQLite gets WAL, a busy timeout and foreign keys."""
    path = sqlite_file(url)
    if path is not None:
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                # User-only from birth: trial logs and host details are nobody else's business.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise AutotuneError(f"database {url}: cannot create {path}: {exc.strerror}") from None
    try:
        eng = create_engine(url, **_engine_kwargs(url))
    except Exception as exc:  # bad URL, missing driver
        raise db_error(url, exc) from None
    if eng.dialect.name == "sqlite":

        @event.listens_for(eng, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite commits DDL implicitly; take transactions over (BEGIN below) so a failed
            # migration rolls back whole instead of leaving half a schema.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            # WAL lets readers (status, dashboard) run while a trial is being written.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s() * 1000)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(eng, "begin")
        def _begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front, so a transaction that reads and then writes waits
            # (busy timeout) for another writer instead of failing at once with a stale WAL snapshot.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return eng


def _migrations_dir() -> str:
    return str(resources.files("autotune.migrations"))


def alembic_config(url: str) -> Config:
    """Alembic's config for our migrations on URL (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", _migrations_dir())
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest migration this autotune ships, as Alembic sees it."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


@cache
def shipped_head() -> str:
    """The newest migration this autotune ships, read from the migration files without importing Alembic."""
    versions = resources.files("autotune.migrations") / "versions"
    revisions, parents = set(), set()
    for f in versions.iterdir():
        if f.name.endswith(".py") and f.name != "__init__.py":
            body = f.read_text()
            revisions.update(re.findall(r'^revision = "(\w+)"', body, re.M))
            parents.update(re.findall(r'^down_revision = "(\w+)"', body, re.M))
    (head,) = revisions - parents
    return head


def current_revision(url: str) -> str | None:
    """The schema revision the database is at (None: our tables were never created)."""
    from alembic.runtime.migration import MigrationContext

    try:
        with engine(url).connect() as conn:
            return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    except SQLAlchemyError as exc:
        raise db_error(url, exc) from None


def upgrade(url: str | None = None) -> tuple[str | None, str]:
    """Apply pending migrations (idempotent); returns (revision before, revision after)."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from filelock import FileLock, Timeout

    url = url or db_url()
    engine(url)  # creates the SQLite file (user-only) or explains why it cannot
    path = sqlite_file(url)
    lock = FileLock(f"{path}.migrate.lock", timeout=busy_timeout_s(), mode=0o600) if path else None
    try:
        if lock:
            lock.acquire()
        before = current_revision(url)
        head = head_revision()
        known = {s.revision for s in ScriptDirectory.from_config(alembic_config(url)).walk_revisions()}
        if before is not None and before not in known:
            raise AutotuneError(
                f"database {_redacted(url)} has schema {before}, newer than this autotune knows; upgrade autotune"
            )
        if before != head:
            cfg = alembic_config(url)
            with engine(url).connect() as conn:
                sqlite = conn.dialect.name == "sqlite"
                if sqlite:
                    # Batch migrations copy tables; with foreign keys enforced, dropping the old copy of a
                    # referenced table fails. The pragma only works outside a transaction: set it on the
                    # driver connection before SQLAlchemy begins one.
                    conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
                try:
                    with conn.begin():
                        cfg.attributes["connection"] = conn
                        command.upgrade(cfg, "head")
                finally:
                    if sqlite:
                        conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
        return before, head
    except Timeout:
        raise AutotuneError(f"database {_redacted(url)}: another process is migrating it; try again") from None
    except OSError as exc:
        raise AutotuneError(f"database {_redacted(url)}: {exc.strerror}: {exc.filename}") from None
    except SQLAlchemyError as exc:
        raise db_error(url, exc) from None
    finally:
        if lock and lock.is_locked:
            lock.release()


def _at_head(url: str) -> bool:
    # One query instead of Alembic's machinery: the common case (a database already up to date) stays light.
    try:
        with engine(url).connect() as conn:
            found = conn.execute(select(column("version_num")).select_from(table(VERSION_TABLE))).scalars().all()
    except SQLAlchemyError:
        return False  # no version table yet, or unreachable: upgrade() creates it or explains
    return found == [shipped_head()]


@cache
def ensure_schema(url: str) -> bool:
    """Bring our tables up to date, once per process and URL."""
    if not _at_head(url):
        upgrade(url)
    return True


def session(url: str | None = None) -> Session:
    """A session on our tables, the schema brought up to date first (once per process)."""
    url = url or db_url()
    ensure_schema(url)
    return _sessions(url)()


@cache
def _sessions(url: str) -> sessionmaker[Session]:
    # One per URL, as SQLAlchemy documents it: each sessionmaker makes a Session subclass of its own, and a
    # daemon makes thousands of transactions (its cost measured small: benchmarks/storage_growth.py).
    return sessionmaker(engine(url), expire_on_commit=False)


@contextmanager
def transaction(url: str | None = None) -> Iterator[Session]:
    """One short transaction on our tables; database errors become one-line AutotuneErrors."""
    url = url or db_url()
    s = session(url)
    path = sqlite_file(url)
    if path is not None and not path.exists():
        # SQLite keeps writing to a deleted file's inode, and every write would vanish at exit: stop instead.
        s.close()
        raise AutotuneError(f"database {path} was deleted while autotune was using it; stopping, nothing more is saved")
    try:
        with s.begin():
            yield s
    except SQLAlchemyError as exc:
        raise db_error(url, exc) from None
    finally:
        s.close()


def optuna_storage(url: str | None = None) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on our database, one per process and URL; a locked or unreachable one: one-line error."""
    return _optuna_storage(url or db_url())


@cache
def _optuna_storage(url: str) -> optuna.storages.RDBStorage:
    # One, as engine() is: each new storage is a new engine whose statements SQLAlchemy compiles afresh, and
    # a process that opened one per study grew about 0.14 MiB a study (benchmarks/storage_growth.py).
    import optuna

    ensure_schema(url)  # our pragmas (WAL) are set on the file before Optuna opens it
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except Exception as exc:  # SQLAlchemy raises many types for bad URLs and files
        raise db_error(url, exc) from None


def db_now(s: Session) -> dt.datetime:
    """The database's clock, naive UTC: heartbeats written and judged by one clock, whatever the hosts' clocks say."""
    dialect = s.get_bind().dialect.name
    if dialect == "sqlite":
        raw = s.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
        return dt.datetime.fromisoformat(raw)
    if dialect == "postgresql":
        return s.execute(text("SELECT timezone('utc', clock_timestamp())")).scalar_one()
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)  # other databases: this host's clock


class Tables:
    """Autotune's tables on one database URL, the schema brought up to date first; every method is one transaction."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or db_url()
        ensure_schema(self.url)  # now, not in the middle of a trial

    def _tx(self) -> AbstractContextManager[Session]:
        return transaction(self.url)
