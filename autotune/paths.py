"""Where autotune keeps its files ($AUTOTUNE_HOME, default ~/.autotune)."""

from __future__ import annotations

import os
from pathlib import Path


def autotune_home() -> Path:
    """Return the autotune home directory, created user-only on first use."""
    home = Path(os.environ.get("AUTOTUNE_HOME") or Path.home() / ".autotune").expanduser()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home


def db_url() -> str:
    """The database URL in force (here, not in the store: reading it must not import SQLAlchemy)."""
    return os.environ.get("AUTOTUNE_DB_URL") or f"sqlite:///{autotune_home() / 'autotune.db'}"


def models_dir() -> Path:
    """Return the cache directory for built-in models."""
    path = autotune_home() / "models"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
