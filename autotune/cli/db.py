"""`autotune db upgrade|prune`: the results database's schema and retention."""

from __future__ import annotations

from typing import Annotated

import typer

from autotune.cli.app import db_app
from autotune.cli.common import JsonOpt, emit


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOpt = False) -> None:
    """Create or migrate autotune's tables (idempotent); Optuna's tables are left to Optuna."""
    from autotune.store.db import db_url, upgrade

    before, after = upgrade(db_url())
    said = (
        f"database already at {after}" if before == after else f"database upgraded from {before or 'empty'} to {after}"
    )
    emit(as_json, {"before": before, "after": after}, said)


@db_app.command("prune")
def db_prune(
    keep_days: Annotated[float, typer.Option(min=0, help="keep every detail of jobs finished within this many days")],
    dry_run: Annotated[bool, typer.Option(help="count what would go, change nothing")] = False,
    vacuum: Annotated[bool, typer.Option(help="then give the freed space back to the file system (SQLite)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Drop the window-by-window detail and server logs of old finished jobs; fronts, metrics and comparisons stay."""
    from autotune.store.retention import Retention

    done = Retention().prune(keep_days, dry_run=dry_run, vacuum=vacuum)
    verb = "would drop" if dry_run else "dropped"
    size = (
        f"; database {done.bytes_before / 2**20:.1f} -> {done.bytes_after / 2**20:.1f} MiB"
        if done.bytes_before is not None and done.bytes_after is not None
        else ""
    )
    said = (
        f"{verb} {done.windows} windows and {done.log_tails} server log tails from {done.trials} trials of "
        f"{done.jobs} jobs finished before {done.cutoff} UTC{size}"
    )
    emit(as_json, done.to_json(), said)
