"""Whether the performance model still holds for a job: its predictions against the trials measured so far.

A model-seeded job stops trusting the model once its throughput predictions miss by more than DRIFT_LIMIT, the
median over at least MIN_TRIALS complete, stable trials: the rest of the job is model-free search. The limit is
the issue's (26), fixed before any job ran with it, not fitted to one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median
from typing import Any

# What a job stores beside each live trial (predicted_* columns): the calibration `report` draws.
STORED = ("throughput_rps", "latency_p99_ms", "cpu_cores")
MIN_TRIALS = 5
DRIFT_LIMIT = 0.25


def relative_error(predicted: float | None, measured: float | None) -> float | None:
    """|predicted / measured - 1|, or None when either is missing or nothing was measured."""
    if predicted is None or not measured:
        return None
    return abs(predicted / measured - 1.0)


@dataclass
class ModelCheck:
    """The throughput errors of a job's predictions so far, and the verdict on them."""

    errors: list[float] = field(default_factory=list)

    def add(self, predicted: dict[str, Any] | None, measured: dict[str, Any]) -> None:
        """Count one trial; an unstable measurement is no truth to judge the model by."""
        if predicted is None or measured.get("stable") is False:
            return
        err = relative_error(predicted.get("throughput_rps"), measured.get("throughput_rps"))
        if err is not None:
            self.errors.append(err)

    def drift(self) -> str | None:
        """One line when the model has drifted from the measurements, else None."""
        if len(self.errors) < MIN_TRIALS:
            return None
        miss = median(self.errors)
        if miss <= DRIFT_LIMIT:
            return None
        return (
            f"the model's throughput predictions miss by {miss:.0%} (median of {len(self.errors)} trials, limit "
            f"{DRIFT_LIMIT:.0%}): model-free search for the rest of the job"
        )
