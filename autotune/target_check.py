"""Does the deployed server perform as its tuning predicted? (`retune --check-target URL`)

The running server is measured as the job measured its trials (same load, SLO and
requests), and its goodput is set against the confirmed figure of the configuration
an export of that job deploys. The reading is stored as a drift check of the job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autotune.export import choose_entry
from autotune.measure import TrialResult, run_target
from autotune.pareto import default_pick, goodput
from autotune.servers.target import Target, fetch_signature
from autotune.store import Store
from autotune.store.drift import DRIFT_TOLERANCE
from autotune.tuner import study_is_feasible


@dataclass(frozen=True)
class TargetCheck:
    """The running server's reading against the prediction, and whether it drifted beyond the tolerance."""

    job_id: int
    trial: int
    predicted_rps: float
    measured_rps: float
    change: float | None
    drifted: bool
    feasible: bool  # the reading met the study's SLO, error limit and stability: else its goodput is 0
    result: TrialResult

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "trial": self.trial,
            "target": self.result.target,
            "predicted_goodput_rps": self.predicted_rps,
            "measured_goodput_rps": self.measured_rps,
            "change": self.change,
            "drifted": self.drifted,
            "feasible": self.feasible,
            "tolerance": DRIFT_TOLERANCE,
            "measurement": self.result.to_json(),
        }


def check_target(job: Any, target: Target, progress: Callable[[str], None] | None = None) -> TargetCheck:
    """Measure TARGET with JOB's settings and compare it with the goodput JOB's default export predicts."""
    store = Store()
    study = job.spec
    entry = choose_entry(job, store.job_front(job), default_pick(list(study.objectives)))
    signature = fetch_signature(target, job.model.name, study.signature)
    settings = job.measure_settings
    result = run_target(target, job.model.name, signature, settings, None, progress)
    feasible = result.ok and study_is_feasible(result.metrics, study, settings.min_achieved_fraction)
    before = goodput(entry.get("metrics"), feasible=True)
    after = goodput(result.metrics, feasible)
    row = store.record_target_check(job, entry["config"], before, after, target.url)
    return TargetCheck(job.id, entry["trial"], before, after, row.change, row.drifted, feasible, result)
