"""Alembic environment: our tables only, tracked in our own version table.

Optuna keeps its schema version in `alembic_version` in the same database, so
ours lives in `autotune_alembic_version` and autogenerate ignores Optuna's tables.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from autotune.store.schema import Base

VERSION_TABLE = "autotune_alembic_version"


def _ours(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    return type_ != "table" or bool(name and name.startswith("autotune_"))


def _configure(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_object=_ours,
        render_as_batch=True,  # SQLite can only ALTER through table copies
        compare_type=True,
    )


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from autotune.store.db import db_url

    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or db_url())
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
