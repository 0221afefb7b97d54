"""Multi-objective Bayesian search over serving configs with Optuna (ask/tell).

Trial 0 is always TensorFlow Serving's defaults, so every result has a baseline.
SLO and error-rate limits go through Optuna's constraints, so infeasible
configs steer the sampler; failed trials are told as failed with their reason.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from autotune.errors import AutotuneError
from autotune.knobs import ServingConfig
from autotune.models.resolve import ModelRef
from autotune.pareto import pareto_front
from autotune.servers.backends import Backend
from autotune.space import Dimension, params_of, suggest
from autotune.spec import Study
from autotune.trial import MeasureSettings, TrialResult, run_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """The study's sampler; constraints reach it through Trial.set_constraint."""
    if name == "tpe":
        # group=True keeps the conditional batching knobs in their own sub-space.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=5)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=10)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise AutotuneError(f"unknown sampler '{name}'")


def constraints_of(trial: optuna.trial.FrozenTrial) -> list[float]:
    """Constraint values we stored (<= 0 is feasible): p99 over the SLO, errors over the limit."""
    return list(trial.user_attrs.get("constraints", [1.0]))


@dataclass
class TunedTrial:
    """One finished trial as the tuner saw it."""

    number: int
    config: ServingConfig
    result: TrialResult
    values: list[float] | None
    feasible: bool


def objective_values(metrics: dict[str, Any], study: Study) -> list[float] | None:
    """The objective vector from measured METRICS, or None if one is missing."""
    values = [metrics.get(name) for name in study.objectives]
    if any(v is None for v in values):
        return None
    return [float(v) for v in values]  # type: ignore[arg-type]


def constraint_values(metrics: dict[str, Any], study: Study) -> list[float]:
    p99 = metrics.get("latency_p99_ms")
    slo_gap = 0.0 if study.slo_p99_ms is None else (float("inf") if p99 is None else p99 - study.slo_p99_ms)
    return [slo_gap, float(metrics.get("error_rate", 1.0)) - study.max_error_rate]


class Tuner:
    """Runs a study's trials against live servers and tells Optuna the results."""

    def __init__(
        self,
        study: Study,
        model: ModelRef,
        backend: Backend,
        space: dict[str, Dimension],
        settings: MeasureSettings,
        storage: optuna.storages.BaseStorage | str | None,
        study_name: str,
    ) -> None:
        self.study = study
        self.model = model
        self.backend = backend
        self.space = space
        self.settings = settings
        self.optuna = optuna.create_study(
            study_name=study_name,
            storage=storage,
            directions=list(study.objectives.values()),
            sampler=make_sampler(study.sampler, study.seed),
            load_if_exists=True,
        )
        self.optuna.set_metric_names(list(study.objectives))

    def enqueue(self, configs: list[ServingConfig]) -> None:
        """Measure these configs first (defaults, a previous Pareto set)."""
        for config in configs:
            self.optuna.enqueue_trial(params_of(config, self.space), skip_if_exists=True)

    def run(
        self,
        trials: int,
        minutes: float,
        progress: Callable[[int, ServingConfig, str], None] | None = None,
        on_trial: Callable[[TunedTrial], None] | None = None,
    ) -> list[TunedTrial]:
        """Run up to TRIALS trials within MINUTES; stops early when a trial is interrupted."""
        if not self.optuna.trials:
            self.enqueue([ServingConfig()])
        deadline = time.monotonic() + minutes * 60
        done: list[TunedTrial] = []
        for _ in range(trials):
            if time.monotonic() >= deadline:
                break
            trial = self.optuna.ask()
            config = suggest(trial, self.space)
            say = None
            if progress is not None:
                say = lambda msg, n=trial.number, c=config: progress(n, c, msg)  # noqa: E731
            result = run_trial(self.model, config, self.settings, self.backend, progress=say)
            tuned = self._tell(trial, config, result)
            done.append(tuned)
            if on_trial:
                on_trial(tuned)
            if result.failure_reason == "interrupted":
                break
        return done

    def _tell(self, trial: optuna.Trial, config: ServingConfig, result: TrialResult) -> TunedTrial:
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("metrics", result.metrics)
        values = objective_values(result.metrics, self.study) if result.ok else None
        if values is None:
            reason = result.failure_reason or "missing_objective"
            trial.set_user_attr("failure_reason", reason)
            trial.set_user_attr("failure_message", result.failure_message or "an objective was not measured")
            trial.set_user_attr("server_log_tail", (result.server_log_tail or "")[-4000:])
            self.optuna.tell(trial, state=optuna.trial.TrialState.FAIL)
            return TunedTrial(trial.number, config, result, None, False)
        constraints = constraint_values(result.metrics, self.study)
        trial.set_user_attr("constraints", constraints)
        trial.set_constraint("latency_p99_over_slo_ms", constraints[0])
        trial.set_constraint("error_rate_over_limit", constraints[1])
        self.optuna.tell(trial, values)
        return TunedTrial(trial.number, config, result, values, all(c <= 0 for c in constraints))


def pareto_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Feasible complete trials that no other feasible trial dominates."""
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if all(c <= 0 for c in constraints_of(t))
    ]
    directions = ["maximize" if d == optuna.study.StudyDirection.MAXIMIZE else "minimize" for d in study.directions]
    front = pareto_front([t.values for t in complete], directions)
    return [complete[i] for i in front]
