"""The `autotune` command line: parse, validate, call one function, print the result.

One module per command group, each registering on the one app (cli/app.py). Every command that prints a
result takes `--json`; with it, errors are JSON too (`{"error": "..."}` on stdout, same exit codes). Options
shared by several commands are declared once (cli/common.py). Heavy imports (TensorFlow, Optuna, plotting)
happen inside the commands that need them, so read-only commands stay light.
"""

from __future__ import annotations

# Imported for their commands, in the order `autotune -h` lists them.
# isort: off
from autotune.cli import measure, tune, daemon, perf, models, db, schedules  # noqa: F401

# isort: on
from autotune.cli.app import app
from autotune.cli.main import main

__all__ = ["app", "main"]
