"""The job queue in the database: claim exactly once, heartbeat, cancel, recover after a crash.

Claims are a conditional UPDATE (state queued -> running) checked by its row
count, which is atomic on SQLite and PostgreSQL alike, so several daemons on
several hosts can share one database without taking a job twice.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import selectinload

from autotune.states import JobState, TrialState
from autotune.store.db import Tables, db_now
from autotune.store.pareto import trial_goodput
from autotune.store.records import hand_back, worker_id
from autotune.store.schema import WHOLE_JOB, HostRow, JobRow


@dataclass(frozen=True)
class Orphan:
    """A job handed back because its worker died: the trial it was running (None between trials), its server pid."""

    job_id: int
    trial: int | None
    server_pid: int | None


class JobQueue(Tables):
    """Claiming, heartbeating, cancelling and recovering jobs; heartbeats run on the database's clock."""

    def claim_next(self, host_fingerprint: str) -> int | None:
        """Take the oldest queued job pinned to this host; None when there is none."""
        with self._tx() as s:
            ids = s.scalars(
                select(JobRow.id)
                .join(HostRow)
                .where(JobRow.state == JobState.queued, HostRow.fingerprint == host_fingerprint)
                .order_by(JobRow.id)
            ).all()
        for job_id in ids:
            with self._tx() as s:
                now = db_now(s)
                claimed = s.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.state == JobState.queued)
                    .values(state=JobState.running, worker=worker_id(), heartbeat_at=now, started_at=now)
                ).rowcount
            if claimed == 1:
                return job_id
        return None

    def heartbeat(self, job_id: int, waiting_reason: str | None = None) -> bool:
        """Mark the job alive (and why it waits, if it does); returns whether a cancel was requested."""
        with self._tx() as s:
            job = s.get(JobRow, job_id)
            if job is None:
                return True
            job.heartbeat_at = db_now(s)
            job.waiting_reason = waiting_reason
            return job.cancel_requested

    def cancel(self, job_id: int) -> JobState:
        """Cancel a queued job now, or ask the daemon running it to stop; returns the resulting state."""
        with self._tx() as s:
            job = s.get(JobRow, job_id)
            if job is None:
                raise LookupError(job_id)
            if job.state == JobState.queued:
                job.state, job.finished_at = JobState.cancelled, db_now(s)
            elif job.state == JobState.running:
                job.cancel_requested = True
            return JobState(job.state)

    def stale_jobs(
        self, host_fingerprint: str | None = None, stale_after_s: float | None = None, idle_worker: str | None = None
    ) -> list[Orphan]:
        """Running jobs whose worker is gone go back to the queue; returns one Orphan per running trial (or per job).

        Gone means: a worker on this host whose process is dead, or (given STALE_AFTER_S) a worker on
        another host whose heartbeat is that old by the database's clock, for jobs pinned to HOST_FINGERPRINT
        (a host that died outright cannot hand its job back). Another host's server pids mean nothing here.
        IDLE_WORKER, a live daemon between jobs, runs none: a job still marked as its own is one whose end it
        could not record (the store was unreachable then).
        """
        host = socket.gethostname()
        orphans: list[Orphan] = []
        with self._tx() as s:
            now = db_now(s)
            query = select(JobRow).where(JobRow.state == JobState.running)
            for job in s.scalars(query.options(selectinload(JobRow.trials), selectinload(JobRow.host))).all():
                if not job.worker:
                    continue
                here = job.worker == idle_worker or _dead_worker_here(job.worker, host)
                silent = (
                    not here
                    and stale_after_s is not None
                    and job.worker.rpartition(":")[0] != host
                    and job.host.fingerprint == host_fingerprint
                    and job.heartbeat_at is not None
                    and (now - job.heartbeat_at).total_seconds() > stale_after_s
                )
                if not (here or silent):
                    continue
                # Another host's server pids mean nothing here; a job handed back between trials is said all the same.
                running = [
                    Orphan(job.id, t.number, t.server_pid if here else None)
                    for t in job.trials
                    if t.state == TrialState.running
                ]
                orphans += running or [Orphan(job.id, None, None)]
                hand_back(job)
        return orphans

    def jobs(self, limit: int = 50) -> list[JobRow]:
        """Recent jobs, newest first, with their trials, model and host loaded."""
        with self._tx() as s:
            return list(s.scalars(select(JobRow).options(*WHOLE_JOB).order_by(JobRow.id.desc()).limit(limit)))

    def job(self, job_id: int) -> JobRow | None:
        """One job with its trials."""
        with self._tx() as s:
            return s.scalar(select(JobRow).where(JobRow.id == job_id).options(*WHOLE_JOB))


def _dead_worker_here(worker: str, host: str) -> bool:
    import psutil

    name, _, pid = worker.rpartition(":")
    if name != host or not pid.isdigit():
        return False  # another host's worker: its own daemon recovers it
    try:
        proc = psutil.Process(int(pid))
        return proc.status() == psutil.STATUS_ZOMBIE or "autotune" not in " ".join(proc.cmdline())
    except psutil.Error:
        return True


def job_summary(job: JobRow) -> dict[str, Any]:
    """A job as `status` shows it."""
    done = [t for t in job.trials if TrialState(t.state).counts_against_budget]
    best = max((trial_goodput(t) for t in job.trials), default=0.0)
    return {
        "id": job.id,
        "model": job.model.name,
        "state": job.state,
        "trigger": job.trigger,
        "trials_done": len(done),
        "trials_total": job.trials_total,
        "best_goodput_rps": best or None,
        "waiting": job.waiting_reason,
        "worker": job.worker,
        "created_at": job.created_at.isoformat() + "Z",
        "error": job.error,
    }
