"""Reading jobs back: the latest job of a model, its trials, the previous Pareto set on this host."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from autotune.errors import AutotuneError
from autotune.store import db
from autotune.store.pareto import front_entries
from autotune.store.schema import WHOLE_JOB, DriftCheckRow, HostRow, JobRow, ModelRow, ParetoSnapshotRow


def _jobs_of(model: str, url: str | None = None, host_fingerprint: str | None = None) -> list[JobRow]:
    url = url or db.db_url()
    query = select(JobRow).join(ModelRow).where(ModelRow.name == model).options(*WHOLE_JOB).order_by(JobRow.id)
    if host_fingerprint is not None:
        query = query.join(HostRow).where(HostRow.fingerprint == host_fingerprint)
    with db.transaction(url) as s:
        return list(s.scalars(query))


def latest_job(model: str, url: str | None = None) -> JobRow:
    """The latest job of MODEL that measured anything; a clear error if it was never tuned."""
    jobs = [j for j in _jobs_of(model, url) if any(t.state != "running" for t in j.trials)]
    if not jobs:
        raise AutotuneError(f"model {model!r} has not been tuned yet (run: autotune start --model {model})")
    return jobs[-1]


def previous_front_job(
    job: JobRow, any_host: bool = False, url: str | None = None
) -> tuple[JobRow, list[dict[str, Any]]] | None:
    """The last earlier job of JOB's model (on JOB's host unless ANY_HOST) that measured anything, and its front."""
    fp = None if any_host else job.host.fingerprint
    earlier = [j for j in _jobs_of(job.model.name, url, fp) if j.id < job.id and j.trials]
    if not earlier:
        return None
    last = earlier[-1]
    return last, job_front(last, url)


def job_front(job: JobRow, url: str | None = None) -> list[dict[str, Any]]:
    """JOB's Pareto set as stored when it ended (with confirmed figures), else computed from its trials."""
    with db.transaction(url or db.db_url()) as s:
        snap = s.scalar(
            select(ParetoSnapshotRow).where(ParetoSnapshotRow.job_id == job.id).order_by(ParetoSnapshotRow.id.desc())
        )
    return snap.entries if snap is not None else front_entries(job)


def last_job_settings(model: str, url: str | None = None) -> dict[str, Any] | None:
    """The measurement settings of the latest job of MODEL (a retune measures the same way)."""
    jobs = _jobs_of(model, url)
    return dict(jobs[-1].settings) if jobs else None


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


def drift_checks(job_id: int | None = None, limit: int = 20, url: str | None = None) -> list[dict[str, Any]]:
    """The drift checks of one retune job (in order), or the LIMIT most recent ones (newest first)."""
    query = select(DriftCheckRow)
    if job_id is not None:
        query = query.where(DriftCheckRow.job_id == job_id).order_by(DriftCheckRow.id)
    else:
        query = query.order_by(DriftCheckRow.id.desc()).limit(limit)
    with db.transaction(url) as s:
        return [{k: getattr(r, k) for k in _DRIFT_FIELDS} for r in s.scalars(query)]
