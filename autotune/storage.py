"""Where results live: one database, SQLite under $AUTOTUNE_HOME by default.

AUTOTUNE_DB_URL overrides it with any SQLAlchemy URL. Optuna's tables live in
it, so `optuna-dashboard <url>` opens autotune's studies.
"""

from __future__ import annotations

import os

import optuna

from autotune.errors import AutotuneError
from autotune.paths import autotune_home


def db_url() -> str:
    """The database URL in force."""
    return os.environ.get("AUTOTUNE_DB_URL") or f"sqlite:///{autotune_home() / 'autotune.db'}"


def optuna_storage(url: str | None = None) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on our database; a locked or unreachable one is a one-line error."""
    url = url or db_url()
    kwargs: dict = {}
    if url.startswith("sqlite"):
        # Wait for a busy writer (another autotune, optuna-dashboard) instead of failing at once.
        kwargs = {"connect_args": {"timeout": 30}}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:  # SQLAlchemy raises many types for bad URLs and files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AutotuneError(f"cannot open the database {url}: {first}") from None
