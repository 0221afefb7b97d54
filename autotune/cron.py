"""`autotune cron install`: a crontab entry that runs `autotune retune --model MODEL` (python-crontab)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from autotune.errors import AutotuneError
from autotune.paths import autotune_home
from autotune.store.schedules import check_cron


def _command(model: str) -> str:
    env = {"AUTOTUNE_HOME": str(autotune_home())}
    if os.environ.get("AUTOTUNE_DB_URL"):
        env["AUTOTUNE_DB_URL"] = os.environ["AUTOTUNE_DB_URL"]
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    # cron treats % as a newline: escape it in every quoted part.
    argv = shlex.join([sys.executable, "-m", "autotune.cli", "retune", "--model", model])
    return f"{assignments} {argv}".replace("%", "\\%")


def _comment(model: str) -> str:
    return f"autotune retune {model}"


def crontab_line(model: str, expr: str) -> str:
    """The crontab line, paths and the model quoted for the shell cron runs it with."""
    return f"{check_cron(expr)} {_command(model)} # {_comment(model)}"


def install(model: str, expr: str, file: Path | None = None) -> str:
    """Add or replace this model's entry in the user's crontab (or FILE); returns where it went."""
    from crontab import CronTab

    expr = check_cron(expr)
    if file is None and shutil.which("crontab") is None:
        raise AutotuneError("the crontab command is not installed; use --print and add the line yourself, or --file")
    try:
        if file is None:
            tab = CronTab(user=True)
        else:
            tab = CronTab(tabfile=str(file)) if file.exists() else CronTab()
        tab.remove_all(comment=_comment(model))
        job = tab.new(command=_command(model), comment=_comment(model))
        job.setall(expr)
        if file is not None:
            tab.write(str(file))
            return str(file)
        tab.write()
        return "the user's crontab"
    except (OSError, ValueError) as exc:
        raise AutotuneError(f"cannot install the crontab entry: {exc}") from None
