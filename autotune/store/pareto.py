"""The Pareto set of a stored job, computed from its trial rows."""

from __future__ import annotations

from typing import Any

from autotune.pareto import goodput, pareto_front
from autotune.states import TrialState
from autotune.store.schema import JobRow, TrialRow


def directions(job: JobRow) -> list[str]:
    """The job's objective directions, in objective order."""
    return job.directions


def front(job: JobRow) -> list[TrialRow]:
    """Feasible complete trials that no other feasible complete trial dominates."""
    feasible = [t for t in job.trials if t.state == TrialState.complete and t.feasible and t.objective_values]
    keep = pareto_front([t.objective_values for t in feasible], directions(job))  # type: ignore[misc]
    return [feasible[i] for i in keep]


def entry(trial: TrialRow) -> dict[str, Any]:
    """A trial as shown and exported: number, config, metrics."""
    return {"trial": trial.number, "config": trial.config, "metrics": trial.metrics}


def front_entries(job: JobRow) -> list[dict[str, Any]]:
    """The job's Pareto set as plain rows."""
    return [entry(t) for t in front(job)]


def trial_goodput(trial: TrialRow) -> float:
    """A stored trial's goodput (0 unless it completed feasibly)."""
    return goodput(trial.metrics, trial.state == TrialState.complete and trial.feasible)
