"""Retune schedules (cron expressions, UTC), pinned to the host where they were added."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update

from autotune.errors import AutotuneError
from autotune.store.db import Tables
from autotune.store.schema import HostRow, ScheduleRow, utcnow


def check_cron(expr: str) -> str:
    """A valid five-field cron expression, or a one-line error."""
    from croniter import croniter  # here: `status` and `schedule list` need no cron parser

    expr = " ".join(expr.split())
    if len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise AutotuneError(f"invalid cron expression {expr!r} (five fields: minute hour day month weekday)")
    return expr


def next_run(expr: str, after: dt.datetime) -> dt.datetime:
    """The first time EXPR fires strictly after AFTER (naive UTC)."""
    from croniter import croniter

    return croniter(expr, after).get_next(dt.datetime)


def lateness_s(due: dt.datetime | None, fired: dt.datetime | None) -> float | None:
    """How long after its time a firing happened, in seconds (None before the first one)."""
    if due is None or fired is None:
        return None
    return round((fired - due).total_seconds(), 1)


class Schedules(Tables):
    """Retune schedules of each host."""

    def add_schedule(self, model: str, expr: str, host_id: int, trials: int | None, minutes: float | None) -> int:
        """Store a schedule; it first fires at the next matching minute."""
        expr = check_cron(expr)
        with self._tx() as s:
            row = ScheduleRow(
                model=model,
                cron=expr,
                host_id=host_id,
                trials=trials,
                minutes=minutes,
                next_run_at=next_run(expr, utcnow()),
            )
            s.add(row)
            s.flush()
            return row.id

    def remove_schedule(self, schedule_id: int) -> None:
        """Delete a schedule; an unknown id is a clear error."""
        with self._tx() as s:
            row = s.get(ScheduleRow, schedule_id)
            if row is None:
                raise AutotuneError(f"no schedule {schedule_id} (see: autotune schedule list)")
            s.delete(row)

    def schedules(self) -> list[dict[str, Any]]:
        """Every schedule with its next run time."""
        with self._tx() as s:
            rows = s.execute(select(ScheduleRow, HostRow.fingerprint).join(HostRow).order_by(ScheduleRow.id)).all()
        return [
            {
                "id": r.id,
                "model": r.model,
                "cron": r.cron,
                "host_fingerprint": fp,
                "trials": r.trials,
                "minutes": r.minutes,
                "next_run_at": r.next_run_at.isoformat() + "Z",
                "last_run_at": r.last_run_at.isoformat() + "Z" if r.last_run_at else None,
                "last_job_id": r.last_job_id,
                "last_due_at": r.last_due_at.isoformat() + "Z" if r.last_due_at else None,
                "late_s": lateness_s(r.last_due_at, r.last_run_at),
                "skipped_runs": r.skipped_runs,
                "last_skip_reason": r.last_skip_reason,
            }
            for r, fp in rows
        ]

    def claim_due(self, host_fingerprint: str) -> list[ScheduleRow]:
        """Schedules of this host that are due, each advanced to its next run exactly once (safe across daemons)."""
        now = utcnow()
        with self._tx() as s:
            due = s.scalars(
                select(ScheduleRow)
                .join(HostRow)
                .where(HostRow.fingerprint == host_fingerprint, ScheduleRow.next_run_at <= now)
            ).all()
        claimed = []
        for row in due:
            with self._tx() as s:
                won = s.execute(
                    update(ScheduleRow)
                    # Still due: another daemon that fired it first has already moved next_run_at on.
                    .where(ScheduleRow.id == row.id, ScheduleRow.next_run_at <= now)
                    .values(next_run_at=next_run(row.cron, now), last_run_at=now, last_due_at=row.next_run_at)
                ).rowcount
            if won == 1:
                claimed.append(row)
        return claimed

    def fired(self, schedule_id: int, job_id: int) -> None:
        """Remember which job a schedule produced."""
        with self._tx() as s:
            row = s.get(ScheduleRow, schedule_id)
            if row is not None:
                row.last_job_id = job_id

    def skipped(self, schedule_id: int, reason: str) -> None:
        """Count a firing that enqueued nothing, and say why (`status` and `schedule list` show it)."""
        with self._tx() as s:
            row = s.get(ScheduleRow, schedule_id)
            if row is not None:
                row.skipped_runs += 1
                row.last_skip_reason = reason
