"""Drift: a retune re-measures the stored Pareto configs and says which moved beyond noise."""

from __future__ import annotations

from typing import Any

from autotune.pareto import goodput
from autotune.store.db import Tables
from autotune.store.queries import PreviousFront
from autotune.store.schema import DriftCheckRow, JobRow

# Repeat measurements of one config on a quiet host stay within this (see benchmarks/RESULTS.md).
DRIFT_TOLERANCE = 0.15


def compare(before_rps: float, after_rps: float, tolerance: float = DRIFT_TOLERANCE) -> tuple[float | None, bool]:
    """Relative change of goodput and whether it is beyond TOLERANCE (0 before: any goodput now is drift)."""
    if before_rps <= 0:
        return None, after_rps > 0
    change = after_rps / before_rps - 1
    return round(change, 4), abs(change) > tolerance


def _same_config(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = set(a) | set(b)
    return all(a.get(k) == b.get(k) or (not a.get(k) and not b.get(k)) for k in keys)


class DriftLog(Tables):
    """Drift checks of retunes."""

    def record_target_check(
        self, job: JobRow, config: dict[str, Any], before_rps: float, after_rps: float, target: str
    ) -> DriftCheckRow:
        """Store a running server's goodput (retune --check-target) against the figure JOB's export predicted."""
        change, drifted = compare(before_rps, after_rps)
        with self._tx() as s:
            row = DriftCheckRow(
                job_id=job.id,
                previous_job_id=job.id,
                model=job.model.name,
                config=config,
                before_goodput_rps=before_rps,
                after_goodput_rps=after_rps,
                change=change,
                drifted=drifted,
                causes=[f"target:{target}"],
            )
            s.add(row)
        return row

    def record_drift(
        self, job: JobRow, previous: PreviousFront, config: dict[str, Any], metrics: dict[str, Any], feasible: bool
    ) -> DriftCheckRow | None:
        """If CONFIG was in the previous job's Pareto set, store how its goodput moved."""
        entry = next((e for e in previous.entries if _same_config(e.get("config", {}), config)), None)
        if entry is None:
            return None
        # A stored front holds only feasible trials: its throughput is its goodput.
        before = goodput(entry.get("metrics"), feasible=True)
        after = goodput(metrics, feasible)
        change, drifted = compare(before, after)
        causes = []
        if job.model_id != previous.job.model_id:
            causes.append("model_changed")
        if job.host_id != previous.job.host_id:
            causes.append("host_changed")
        with self._tx() as s:
            row = DriftCheckRow(
                job_id=job.id,
                previous_job_id=previous.job.id,
                model=previous.job.model.name,
                config=config,
                before_goodput_rps=before,
                after_goodput_rps=after,
                change=change,
                drifted=drifted,
                causes=causes,
            )
            s.add(row)
        return row
