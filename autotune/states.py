"""What states a job and a trial go through, why a trial fails, and what started a job: one place for all.

Values are the strings stored in the database and printed in JSON; a StrEnum
member compares equal to its string, so rows read back compare directly.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """A tuning job: queued -> running -> done | failed | cancelled (running -> queued when handed back)."""

    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def active(self) -> bool:
        """Still to run or running: a follower keeps watching, a cancel still has an effect."""
        return self in (JobState.queued, JobState.running)


class TrialState(StrEnum):
    """One measured config: running -> complete | failed | interrupted."""

    running = "running"
    complete = "complete"
    failed = "failed"
    interrupted = "interrupted"  # measured nothing (Ctrl-C, a daemon stopping or dying): measured again

    @property
    def counts_against_budget(self) -> bool:
        """Complete and failed trials spend the budget; an interrupted one is redone on resume."""
        return self in (TrialState.complete, TrialState.failed)

    @property
    def finished(self) -> bool:
        return self is not TrialState.running


class FailureReason(StrEnum):
    """Why a trial produced no usable measurement (DESIGN's failure_reason)."""

    server_start_failed = "server_start_failed"
    server_crashed = "server_crashed"
    timeout = "timeout"
    errors_over_limit = "errors_over_limit"
    oom = "oom"
    unstable = "unstable"  # measured, figures kept, but never trusted: infeasible, never exported
    interrupted = "interrupted"
    client_failed = "client_failed"
    missing_objective = "missing_objective"  # the server answered, but an objective was not measured
    # The model could not become the config's variant (an op TFLite lacks), or its answers could not be checked.
    variant_failed = "variant_failed"
    # The performance model's pick, dropped unmeasured once the model was found to drift (an Optuna trial only).
    skipped = "skipped"


class Trigger(StrEnum):
    """What enqueued a job."""

    manual = "manual"
    retune = "retune"
    schedule = "schedule"

    @property
    def retunes(self) -> bool:
        """A retune re-measures the previous front (from any host) and records drift."""
        return self is not Trigger.manual
