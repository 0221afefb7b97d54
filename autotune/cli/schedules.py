"""`autotune schedule add|list|remove` and `cron install`: retunes on a clock."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autotune import tables
from autotune.cli.app import cron_app, schedule_app
from autotune.cli.common import JsonOpt, emit


@schedule_app.command("add")
def schedule_add(
    model: Annotated[str, typer.Option("--model", "-m", help="built-in name or SavedModel path")],
    cron: Annotated[str, typer.Option(help="cron expression, UTC (e.g. '0 2 * * *')")],
    trials: Annotated[int | None, typer.Option(help="trial budget per retune")] = None,
    minutes: Annotated[float | None, typer.Option(help="time budget per retune")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Retune MODEL on this host whenever CRON fires (the daemon enqueues it)."""
    from autotune.fingerprint import fingerprint, host_info
    from autotune.models.resolve import check_spec
    from autotune.spec import study_for_model
    from autotune.store import Store
    from autotune.store.schedules import check_cron

    check_cron(cron)
    check_spec(model)  # refused now, not at 2 am
    study_for_model(model)
    info = host_info()
    store = Store()
    schedule_id = store.add_schedule(model, cron, store.host(info, fingerprint(info)), trials, minutes)
    row = next(r for r in store.schedules() if r["id"] == schedule_id)
    emit(as_json, row, f"schedule {schedule_id}: retune {model} at '{row['cron']}' (next {row['next_run_at']})")


@schedule_app.command("list")
def schedule_list(as_json: JsonOpt = False) -> None:
    """Schedules with their next run time (UTC)."""
    from autotune.store import Store

    rows = Store().schedules()

    emit(as_json, rows, lambda: tables.print_schedules(rows))


@schedule_app.command("remove")
def schedule_remove(schedule_id: Annotated[int, typer.Argument(help="schedule id")], as_json: JsonOpt = False) -> None:
    """Delete a schedule."""
    from autotune.store import Store

    Store().remove_schedule(schedule_id)
    emit(as_json, {"removed": schedule_id}, f"schedule {schedule_id} removed")


@cron_app.command("install")
def cron_install(
    model: Annotated[str, typer.Option("--model", "-m", help="built-in name or SavedModel path")],
    cron: Annotated[str, typer.Option(help="cron expression (the host's cron time zone)")] = "0 2 * * *",
    print_only: Annotated[bool, typer.Option("--print", help="print the crontab line, change nothing")] = False,
    file: Annotated[Path | None, typer.Option(help="write to this crontab file instead of the user's crontab")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Install a crontab entry running `autotune retune --model MODEL` (for hosts that prefer cron)."""
    from autotune.cron import crontab_line, install

    line = crontab_line(model, cron)
    if print_only:
        emit(as_json, {"line": line, "installed_in": None}, lambda: print(line))
        return
    where = install(model, cron, file)
    emit(as_json, {"line": line, "installed_in": str(where)}, f"installed in {where}: {line}")
