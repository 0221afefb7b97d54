"""Reading jobs back: which job a command means, its front, the previous front, drift checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from autotune.errors import AutotuneError
from autotune.states import TrialState
from autotune.store.db import Tables
from autotune.store.pareto import front_entries
from autotune.store.schema import WHOLE_JOB, DriftCheckRow, HostRow, JobRow, ModelRow, ParetoSnapshotRow

if TYPE_CHECKING:
    from autotune.measure.settings import MeasureSettings

_DRIFT_FIELDS = (
    "job_id",
    "previous_job_id",
    "model",
    "config",
    "before_goodput_rps",
    "after_goodput_rps",
    "change",
    "drifted",
    "causes",
)


@dataclass(frozen=True)
class PreviousFront:
    """The front a new job starts from (warm start) and a retune checks for drift."""

    job: JobRow
    entries: list[dict[str, Any]]


def _measured(job: JobRow) -> bool:
    return any(TrialState(t.state).finished for t in job.trials)


class Queries(Tables):
    """Read-only questions about jobs."""

    def jobs_of(self, model: str, host_fingerprint: str | None = None) -> list[JobRow]:
        """MODEL's jobs, oldest first (on one host when HOST_FINGERPRINT is given), with everything loaded."""
        query = select(JobRow).join(ModelRow).where(ModelRow.name == model).options(*WHOLE_JOB).order_by(JobRow.id)
        if host_fingerprint is not None:
            query = query.join(HostRow).where(HostRow.fingerprint == host_fingerprint)
        with self._tx() as s:
            return list(s.scalars(query))

    def pick_job(self, model: str | None, job_id: int | None, host_fingerprint: str) -> JobRow:
        """Job JOB_ID, or else MODEL's latest job on this host that measured anything; a clear error otherwise.

        Another host's job is only taken by id: on a shared database its figures belong to its own hardware.
        """
        if job_id is not None:
            with self._tx() as s:
                job = s.scalar(select(JobRow).where(JobRow.id == job_id).options(*WHOLE_JOB))
            if job is None:
                raise AutotuneError(f"job {job_id} does not exist (see: autotune status)")
            if model is not None and job.model.name != model:
                raise AutotuneError(f"job {job_id} tuned model {job.model.name!r}, not {model!r}")
            return job
        if model is None:
            raise AutotuneError("give --model NAME or --job ID")
        here = [j for j in self.jobs_of(model, host_fingerprint) if _measured(j)]
        if here:
            return here[-1]
        elsewhere = [j.id for j in self.jobs_of(model) if _measured(j)]
        if elsewhere:
            raise AutotuneError(
                f"model {model!r} has not been tuned on this host; jobs from other hosts: "
                f"{', '.join(map(str, elsewhere[-5:]))} (pick one with --job ID)"
            )
        raise AutotuneError(f"model {model!r} has not been tuned yet (run: autotune start --model {model})")

    def previous_front(self, job: JobRow, any_host: bool = False) -> PreviousFront | None:
        """The last earlier job of JOB's model (on JOB's host unless ANY_HOST) that measured anything, and its front."""
        fp = None if any_host else job.host.fingerprint
        earlier = [j for j in self.jobs_of(job.model.name, fp) if j.id < job.id and j.trials]
        if not earlier:
            return None
        return PreviousFront(earlier[-1], self.job_front(earlier[-1]))

    def job_front(self, job: JobRow) -> list[dict[str, Any]]:
        """JOB's Pareto set as stored when it ended (with confirmed figures), else computed from its trials."""
        with self._tx() as s:
            snap = s.scalar(
                select(ParetoSnapshotRow)
                .where(ParetoSnapshotRow.job_id == job.id)
                .order_by(ParetoSnapshotRow.id.desc())
            )
        return snap.entries if snap is not None else front_entries(job)

    def last_job_settings(self, model: str) -> MeasureSettings | None:
        """The measurement settings of the latest job of MODEL (a retune measures the same way)."""
        jobs = self.jobs_of(model)
        return jobs[-1].measure_settings if jobs else None

    def drift_checks(self, job_id: int | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The drift checks of one retune job (in order), or the LIMIT most recent ones (newest first)."""
        query = select(DriftCheckRow)
        if job_id is not None:
            query = query.where(DriftCheckRow.job_id == job_id).order_by(DriftCheckRow.id)
        else:
            query = query.order_by(DriftCheckRow.id.desc()).limit(limit)
        with self._tx() as s:
            return [{k: getattr(r, k) for k in _DRIFT_FIELDS} for r in s.scalars(query)]
