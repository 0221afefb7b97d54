"""`autotune daemon`, `status`, `stop` and `retune`: the worker and the jobs it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autotune import tables
from autotune.cli.app import app
from autotune.cli.common import (
    EXIT_TRIAL_FAILED,
    AllowRemoteOpt,
    JobOpt,
    JsonOpt,
    MinutesOpt,
    TargetGrpcOpt,
    TrialsOpt,
    check_budget,
    emit,
    err,
    flag,
    jobs_changed,
    pick_job,
)
from autotune.daemon_options import DaemonOptions, GateSettings
from autotune.errors import AutotuneError
from autotune.options import checked, declared
from autotune.states import JobState

_DAEMON, _GATE = DaemonOptions(), GateSettings()


@app.command()
def daemon(
    log_file: Annotated[Path | None, typer.Option(help="log here instead of stderr")] = None,
    poll_s: Annotated[float, flag(declared(DaemonOptions, "poll_s"))] = _DAEMON.poll_s,
    metrics_port: Annotated[int, flag(declared(DaemonOptions, "metrics_port"))] = _DAEMON.metrics_port,
    max_foreign_cores: Annotated[float, flag(declared(GateSettings, "max_foreign_cores"))] = _GATE.max_foreign_cores,
    quiet_s: Annotated[float, flag(declared(GateSettings, "quiet_s"))] = _GATE.quiet_s,
    stale_after_s: Annotated[float, flag(declared(DaemonOptions, "stale_after_s"))] = _DAEMON.stale_after_s,
    log_max_mb: Annotated[float, flag(declared(DaemonOptions, "log_max_mb"))] = _DAEMON.log_max_mb,
    prune_days: Annotated[float | None, flag(declared(DaemonOptions, "prune_days"))] = _DAEMON.prune_days,
    print_systemd_unit: Annotated[bool, typer.Option(help="print a systemd unit and exit")] = False,
) -> None:
    """The worker: one per host and database; runs queued jobs while the host is quiet."""
    if print_systemd_unit:
        from autotune.daemon_control import systemd_unit

        print(systemd_unit(), end="")
        return
    gate = checked(GateSettings(max_foreign_cores=max_foreign_cores, quiet_s=quiet_s))
    options = checked(
        DaemonOptions(
            log_file,
            poll_s,
            metrics_port,
            gate,
            stale_after_s=stale_after_s,
            log_max_mb=log_max_mb,
            prune_days=prune_days,
        )
    )
    from autotune.daemon import run_daemon

    raise typer.Exit(run_daemon(options))


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """The daemon (pid, uptime, gate) and the recent jobs: read from the daemon's status file while one runs."""
    import datetime as dt

    from autotune.daemon_control import read_status, snapshot_is_current

    daemon_info = read_status()
    if daemon_info:
        started = dt.datetime.fromisoformat(daemon_info["started_at"].rstrip("Z"))
        daemon_info["uptime_s"] = round((dt.datetime.now(dt.UTC).replace(tzinfo=None) - started).total_seconds())
    if daemon_info and snapshot_is_current(daemon_info):
        # The daemon's own list: no SQLAlchemy import, no query, on a host the daemon may be measuring.
        jobs, drift = daemon_info["jobs"], daemon_info.get("drift", [])
        schedules, source = daemon_info.get("schedules", []), "daemon"
    else:
        from autotune.store import Store, job_summary

        store = Store()
        jobs, drift = [job_summary(j) for j in store.jobs()], store.drift_checks()
        schedules, source = store.schedules(), "store"
    if daemon_info:
        daemon_info = {k: v for k, v in daemon_info.items() if k not in ("jobs", "drift", "schedules")}
    emit(
        as_json,
        {"daemon": daemon_info, "jobs": jobs, "drift": drift, "schedules": schedules, "source": source},
        lambda: tables.print_status(daemon_info, jobs, drift, schedules),
    )


@app.command()
def stop(
    job_id: Annotated[int | None, typer.Argument(help="the job to cancel")] = None,
    stop_daemon: Annotated[
        bool, typer.Option("--daemon", help="stop the daemon (its current trial is interrupted, the job resumes later)")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a job (`stop JOB`), or stop the daemon cleanly (`stop --daemon`)."""
    if (job_id is None) == (not stop_daemon):
        raise AutotuneError("give a job id to cancel (autotune stop JOB) or --daemon to stop the daemon, not both")
    if job_id is not None:
        from autotune.store import Store

        try:
            state = Store().cancel(job_id)
        except LookupError:
            raise AutotuneError(f"job {job_id} does not exist") from None
        jobs_changed()
        says = {
            JobState.cancelled: "cancelled",
            JobState.running: "cancel requested; the daemon stops it within seconds",
        }
        emit(as_json, {"job_id": job_id, "state": state}, f"job {job_id}: {says.get(state, f'already {state}')}")
        return
    from autotune.daemon_control import stop_daemon as stop_it

    pid = stop_it()
    emit(
        as_json,
        {"daemon_pid": pid, "stopped": pid is not None},
        "no daemon running" if pid is None else f"daemon {pid} stopped",
    )


@app.command()
def retune(
    model: Annotated[str, typer.Option("--model", "-m", help="built-in name or SavedModel path")],
    trials: TrialsOpt = None,
    minutes: MinutesOpt = None,
    check_target: Annotated[
        str | None,
        typer.Option(
            help="instead: measure the deployed TF Serving at this URL as the last job measured, against what "
            "its export predicted (drift from production); nothing is queued"
        ),
    ] = None,
    target_grpc: TargetGrpcOpt = None,
    allow_remote: AllowRemoteOpt = None,
    job_id: JobOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Enqueue a retune (re-measure the stored Pareto set, report drift, search again) and ensure a daemon."""
    from autotune.daemon import enqueue_retune
    from autotune.daemon_control import ensure_daemon
    from autotune.models.resolve import check_spec

    if check_target is not None:
        _check_target(model, job_id, check_target, target_grpc, allow_remote, as_json)
        return
    check_budget(trials, minutes)
    check_spec(model)
    job_id = enqueue_retune(model, trials, minutes)
    jobs_changed()
    pid = ensure_daemon()
    emit(as_json, {"job_id": job_id, "daemon_pid": pid}, f"retune job {job_id} queued; daemon pid {pid}")


def _check_target(
    model: str, job_id: int | None, url: str, grpc: str | None, allow_remote: list[str] | None, as_json: bool
) -> None:
    from autotune.servers.target import parse_target
    from autotune.target_check import check_target

    where = parse_target(url, grpc, allow_remote)
    job = pick_job(model, job_id)
    err.print(f"checking {where.url} against job {job.id}'s prediction (measured as the job measured)", markup=False)
    with err.status("measuring") as status:
        check = check_target(job, where, status.update)
    jobs_changed()  # a drift check was stored
    change = "n/a" if check.change is None else f"{check.change:+.1%}"
    line = (
        f"{job.model.name} at {where.url}: goodput {check.measured_rps:.1f} rps, job {job.id} trial {check.trial} "
        f"predicted {check.predicted_rps:.1f} rps ({change}): "
        + ("DRIFT beyond" if check.drifted else "within")
        + " the tolerance"
        + ("" if check.feasible else " (the reading missed the SLO, the error limit or stability: goodput 0)")
    )
    emit(as_json, check.to_json(), line)
    if not check.result.ok:
        err.print(f"measurement failed: {check.result.failure_reason}: {check.result.failure_message}", markup=False)
        raise typer.Exit(EXIT_TRIAL_FAILED)
