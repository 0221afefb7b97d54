"""autotune's own tables (SQLAlchemy 2 ORM). Alembic in migrations/ creates and evolves them.

They sit beside Optuna's tables in one database: Optuna keeps what the sampler
needs, these keep what a serving engineer audits (which host, which model bytes,
which job, every window of every trial, and the Pareto set each job ended with).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload

if TYPE_CHECKING:
    from autotune.measure.settings import MeasureSettings
    from autotune.spec import Study


def utcnow() -> dt.datetime:
    """Timestamps are naive UTC everywhere (SQLite has no time zones)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


class HostRow(Base):
    """A machine as the results depend on it: CPU, cores, memory, GPUs, TF version."""

    __tablename__ = "autotune_hosts"
    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    info: Mapped[dict[str, Any]]
    first_seen: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ModelRow(Base):
    """A model's bytes: same path with other content is another model (drift)."""

    __tablename__ = "autotune_models"
    __table_args__ = (UniqueConstraint("path", "content_hash"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    path: Mapped[str] = mapped_column(Text)
    version: Mapped[int]
    content_hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[dict[str, Any]]
    first_seen: Mapped[dt.datetime] = mapped_column(default=utcnow)


class JobRow(Base):
    """One tuning job: a study with a budget, on one host, for one model."""

    __tablename__ = "autotune_jobs"
    __table_args__ = (Index("ix_autotune_jobs_state", "state"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("autotune_models.id"))
    host_id: Mapped[int] = mapped_column(ForeignKey("autotune_hosts.id"))
    study_name: Mapped[str] = mapped_column(String(300), unique=True)
    state: Mapped[str] = mapped_column(String(20))  # a states.JobState
    trigger: Mapped[str] = mapped_column(String(20), default="manual")  # a states.Trigger
    study: Mapped[dict[str, Any]]  # the validated study, as run
    settings: Mapped[dict[str, Any]]  # measurement settings
    backend: Mapped[str] = mapped_column(String(40))
    trials_total: Mapped[int]
    minutes: Mapped[float]
    worker: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    # Added in 0002 (the daemon): how to start the server, a user's cancel, why the job is waiting.
    backend_options: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    cancel_requested: Mapped[bool] = mapped_column(default=False, server_default=false())
    waiting_reason: Mapped[str | None] = mapped_column(Text)
    # The performance model's front, as the job planned it (model-seeded jobs): `report` sets it beside the confirmed.
    predicted_front: Mapped[list[Any] | None]

    model: Mapped[ModelRow] = relationship()
    host: Mapped[HostRow] = relationship()
    trials: Mapped[list[TrialRow]] = relationship(back_populates="job", order_by="TrialRow.number")

    # Read through these, not the stored study's JSON: its layout is the store's to change.
    @property
    def objectives(self) -> list[str]:
        """The job's objectives (metric names), in order."""
        return list(self.study["objectives"])

    @property
    def directions(self) -> list[str]:
        """Each objective's direction (minimize or maximize), in objective order."""
        return list(self.study["objectives"].values())

    @property
    def spec(self) -> Study:
        """The study the job ran, typed (a field added or dropped since it was stored takes its default)."""
        from autotune.spec import study_from_dict

        return study_from_dict(self.study)

    @property
    def measure_settings(self) -> MeasureSettings:
        """How the job's trials were measured, typed, with the same tolerance for renamed fields."""
        from autotune.measure.settings import MeasureSettings

        return MeasureSettings.from_stored(self.settings or {})


class TrialRow(Base):
    """One measured config: params, metrics, every window, and why it failed if it did."""

    __tablename__ = "autotune_trials"
    __table_args__ = (UniqueConstraint("job_id", "number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("autotune_jobs.id"), index=True)
    number: Mapped[int]  # Optuna's trial number in the job's study
    state: Mapped[str] = mapped_column(String(20))  # a states.TrialState
    config: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    objective_values: Mapped[list[Any] | None]
    constraints: Mapped[list[Any] | None]
    feasible: Mapped[bool] = mapped_column(default=False)
    levels: Mapped[list[Any]] = mapped_column(default=list)  # load levels, each with its windows
    argv: Mapped[list[Any]] = mapped_column(default=list)
    server_pid: Mapped[int | None]
    worker: Mapped[str | None] = mapped_column(String(200))  # host:pid of the daemon (or CLI) that measured it
    failure_reason: Mapped[str | None] = mapped_column(String(40))
    failure_message: Mapped[str | None] = mapped_column(Text)
    server_log_tail: Mapped[str | None] = mapped_column(Text)
    # What the performance model predicted for this config (model-seeded jobs): `report` draws its calibration.
    predicted_throughput_rps: Mapped[float | None]
    predicted_latency_p99_ms: Mapped[float | None]
    predicted_cpu_cores: Mapped[float | None]
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]

    job: Mapped[JobRow] = relationship(back_populates="trials")


class ParetoSnapshotRow(Base):
    """The Pareto set a job ended with, frozen, so later runs can show drift against it."""

    __tablename__ = "autotune_pareto_snapshots"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("autotune_jobs.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    entries: Mapped[list[Any]]  # [{"trial": n, "config": {...}, "metrics": {...}}]


class ScheduleRow(Base):
    """A recurring retune of a model on one host (cron expression, evaluated in UTC)."""

    __tablename__ = "autotune_schedules"
    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(Text)  # as given to --model: built-in name or path
    cron: Mapped[str] = mapped_column(String(200))
    host_id: Mapped[int] = mapped_column(ForeignKey("autotune_hosts.id"))
    trials: Mapped[int | None]
    minutes: Mapped[float | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_run_at: Mapped[dt.datetime | None]
    next_run_at: Mapped[dt.datetime]
    last_job_id: Mapped[int | None]
    last_due_at: Mapped[dt.datetime | None]  # when the last firing was due: last_run_at minus it is its lateness
    # Firings not enqueued because the previous retune had not started yet (the gate stayed closed, or a long job).
    skipped_runs: Mapped[int] = mapped_column(default=0, server_default="0")
    last_skip_reason: Mapped[str | None] = mapped_column(Text)


class DriftCheckRow(Base):
    """A retune's re-measurement of a stored Pareto config; `drifted` marks the drift events."""

    __tablename__ = "autotune_drift_checks"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("autotune_jobs.id"), index=True)
    previous_job_id: Mapped[int] = mapped_column(ForeignKey("autotune_jobs.id"))
    model: Mapped[str] = mapped_column(String(200), index=True)
    config: Mapped[dict[str, Any]]
    before_goodput_rps: Mapped[float]
    after_goodput_rps: Mapped[float]
    change: Mapped[float | None]  # after / before - 1 (None when before was 0)
    drifted: Mapped[bool]
    # model_changed, host_changed: what differs since the previous job; target:URL: a running server measured
    causes: Mapped[list[Any]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# Loader options for a job with everything `status`, reports and exports read from it.
WHOLE_JOB = (selectinload(JobRow.trials), selectinload(JobRow.model), selectinload(JobRow.host))


class ProfileRow(Base):
    """A model's measured batch costs on one host (perfmodel.profile.Profile as JSON): one per content and host."""

    __tablename__ = "autotune_profiles"
    __table_args__ = (UniqueConstraint("content_hash", "host_fingerprint"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    host_fingerprint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]]


class ComparisonRow(Base):
    """One compare or confirmation, both sides of every run (pids, start times, figures), so each ratio can be
    recomputed from the store."""

    __tablename__ = "autotune_comparisons"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # "compare" or "confirm"
    model: Mapped[str] = mapped_column(String(200), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("autotune_jobs.id"), index=True)  # a confirmation's job
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    verdict: Mapped[str | None] = mapped_column(String(20))
    result: Mapped[dict[str, Any]]  # Comparison.to_json(), or the confirmed entries with the defaults' runs
