"""Writing jobs and trials as they happen, so a crash loses at most the trial in flight."""

from __future__ import annotations

import os
import socket
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from autotune.states import FailureReason, JobState, TrialState, Trigger
from autotune.store.db import Tables, db_now
from autotune.store.pareto import front_entries
from autotune.store.schema import HostRow, JobRow, ModelRow, ParetoSnapshotRow, TrialRow, utcnow

if TYPE_CHECKING:
    from autotune.models.resolve import ModelRef


def worker_id() -> str:
    """Who runs a job: host name and pid, so a stale claim can be recognised."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Records(Tables):
    """Hosts, models, jobs and trials as they happen."""

    def host(self, info: dict[str, Any], fingerprint: str) -> int:
        """The id of this host's row, created on first sight."""
        with self._tx() as s:
            row = s.scalar(select(HostRow).where(HostRow.fingerprint == fingerprint))
            if row is None:
                row = HostRow(fingerprint=fingerprint, info=info)
                s.add(row)
            row.last_seen = utcnow()
            s.flush()
            return row.id

    def model(self, ref: ModelRef) -> int:
        """The id of this model's bytes (path + content hash), created on first sight."""
        from autotune.models.content import content_hash

        digest = content_hash(ref.version_path)
        path = str(ref.base_path)
        with self._tx() as s:
            row = s.scalar(select(ModelRow).where(ModelRow.path == path, ModelRow.content_hash == digest))
            if row is None:
                row = ModelRow(
                    name=ref.name,
                    path=path,
                    version=ref.version,
                    content_hash=digest,
                    signature=asdict(ref.signature),
                )
                s.add(row)
                s.flush()
            return row.id

    def create_job(
        self,
        *,
        model_id: int,
        host_id: int,
        study_name: str,
        study: dict[str, Any],
        settings: dict[str, Any],
        backend: str,
        trials_total: int,
        minutes: float,
        state: JobState = JobState.running,
        trigger: Trigger = Trigger.manual,
        backend_options: dict[str, Any] | None = None,
    ) -> int:
        """A new job row; a foreground job starts out running and owned by this process."""
        running = state == JobState.running
        with self._tx() as s:
            now = db_now(s)
            job = JobRow(
                model_id=model_id,
                host_id=host_id,
                study_name=study_name,
                state=state,
                trigger=trigger,
                study=study,
                settings=settings,
                backend=backend,
                trials_total=trials_total,
                minutes=minutes,
                worker=worker_id() if running else None,
                started_at=now if running else None,
                heartbeat_at=now if running else None,
                backend_options=backend_options or {},
            )
            s.add(job)
            s.flush()
            return job.id

    def begin_trial(self, job_id: int, number: int, config: dict[str, Any]) -> None:
        """Record a trial as running before its server starts (so a crash leaves a trace)."""
        with self._tx() as s:
            s.add(TrialRow(job_id=job_id, number=number, state=TrialState.running, config=config, worker=worker_id()))
            _touch(s, job_id)

    def planned(self, job_id: int, front: list[dict[str, Any]]) -> None:
        """Keep the performance model's predicted front of a job (what `report` compares the confirmed one to)."""
        with self._tx() as s:
            job = s.get(JobRow, job_id)
            if job is not None:
                job.predicted_front = front

    def server_started(self, job_id: int, number: int, pid: int) -> None:
        """Remember the server's pid, so an orphan can be found and killed after a crash."""
        with self._tx() as s:
            row = self._trial(s, job_id, number)
            row.server_pid = pid

    def finish_trial(self, job_id: int, number: int, **fields: Any) -> None:
        """Store a trial's outcome: state, metrics, objective values, levels, failure."""
        with self._tx() as s:
            row = self._trial(s, job_id, number)
            for key, value in fields.items():
                setattr(row, key, value)
            row.finished_at = utcnow()
            _touch(s, job_id)

    def front(self, job_id: int) -> list[dict[str, Any]]:
        """The job's current Pareto set from its trial rows (before confirmation)."""
        with self._tx() as s:
            job = s.get(JobRow, job_id)
            assert job is not None
            return front_entries(job)

    def finish_job(
        self, job_id: int, state: JobState, error: str | None = None, entries: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Close a job and freeze its Pareto set (ENTRIES: the confirmed one); running trials become interrupted.

        STATE queued hands the job back (a daemon stopping): no snapshot, it resumes later.
        """
        with self._tx() as s:
            job = s.get(JobRow, job_id)
            assert job is not None
            if state == JobState.queued:
                hand_back(job)
                return []
            interrupt_running(job)
            entries = entries if entries is not None else front_entries(job)
            s.add(ParetoSnapshotRow(job_id=job_id, entries=entries))
            job.state = state
            job.error = error
            job.finished_at = utcnow()
            return entries

    def trial_count(self, job_id: int) -> int:
        """Trials that count against the budget: complete or failed (interrupted ones are redone)."""
        with self._tx() as s:
            job = s.get(JobRow, job_id)
            assert job is not None
            return sum(1 for t in job.trials if TrialState(t.state).counts_against_budget)

    @staticmethod
    def _trial(s: Session, job_id: int, number: int) -> TrialRow:
        row = s.scalar(select(TrialRow).where(TrialRow.job_id == job_id, TrialRow.number == number))
        if row is None:  # begin_trial always runs first; a missing row is a bug, not user input
            raise RuntimeError(f"trial {number} of job {job_id} was never begun")
        return row


def _touch(s: Session, job_id: int) -> None:
    job = s.get(JobRow, job_id)
    if job is not None:
        job.heartbeat_at = db_now(s)


def interrupt_running(job: JobRow) -> None:
    """Trials still marked running will never finish: record them as interrupted."""
    for trial in job.trials:
        if trial.state == TrialState.running:
            trial.state = TrialState.interrupted
            trial.failure_reason = trial.failure_reason or FailureReason.interrupted
            trial.finished_at = utcnow()


def hand_back(job: JobRow) -> None:
    """Return a job to the queue (its worker stopped or died); it resumes with the next daemon."""
    interrupt_running(job)
    job.state, job.worker, job.waiting_reason = JobState.queued, None, None
