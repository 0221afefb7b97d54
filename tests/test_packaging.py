"""What pip installs: every package, the migrations and their template."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_for_setuptools():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "autotune").rglob("__init__.py")} | {
        "autotune.migrations",
        "autotune.migrations.versions",
    }
    assert listed == found


def test_migrations_are_importable_as_shipped():
    from importlib import resources

    shipped = resources.files("autotune.migrations")
    assert (shipped / "env.py").is_file() and (shipped / "script.py.mako").is_file()
    assert any(p.name.endswith(".py") and p.name[0].isdigit() for p in (shipped / "versions").iterdir())
