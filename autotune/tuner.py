"""Multi-objective Bayesian search over serving configs with Optuna (ask/tell).

Trial 0 is always TensorFlow Serving's defaults, so every result has a baseline.
SLO and error-rate limits go through Optuna's constraints, so infeasible
configs steer the sampler; failed trials are told as failed with their reason.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from autotune.errors import AutotuneError
from autotune.knobs import ServingConfig, config_from_dict
from autotune.measure import MeasureSettings, TrialResult, run_trial
from autotune.model_check import ModelCheck
from autotune.models.resolve import ModelRef
from autotune.pareto import goodput
from autotune.seeds import allowance_seeds, heuristic_seeds
from autotune.servers.backends import Backend
from autotune.space import Dimension, grid_of, params_of, suggest
from autotune.spec import METRIC_LIMITS, Study
from autotune.states import FailureReason, TrialState

optuna.logging.set_verbosity(optuna.logging.WARNING)
# How a config becomes a result: (config, progress, on_server_pid) -> result. Live trials by default.
Measure = Callable[[ServingConfig, Callable[[str], None] | None, Callable[[int], None] | None], TrialResult]
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# The user attr that marks an enqueued trial as the performance model's pick.
PLANNED_ATTR = "planned"
# What a trial keeps of its server's log: the end, where the reason for a failure is.
LOG_TAIL_CHARS = 4000


class GridSweep(optuna.samplers.BruteForceSampler):
    """Optuna's exhaustive sampler under ask/tell: it says when every config was measured instead of stopping."""

    exhausted = False

    def after_trial(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: optuna.trial.TrialState, values: Any
    ) -> None:
        try:
            super().after_trial(study, trial, state, values)
        except RuntimeError:  # its Study.stop() only works inside optimize(): the grid is done
            self.exhausted = True


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """The study's sampler; constraints reach it through Trial.set_constraint.

    `autotune` is TPE after the informed first trials of `autotune.seeds` (the Tuner enqueues those);
    `grid` sweeps the space exhaustively (the Tuner discretizes its ranges: space.grid_of).
    """
    if name == "grid":
        return GridSweep(seed=seed)
    if name in ("autotune", "tpe"):
        # group=True keeps the conditional batching knobs in their own sub-space.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=5)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=10)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise AutotuneError(f"unknown sampler '{name}'")


@dataclass
class TunedTrial:
    """One finished trial as the tuner saw it."""

    number: int
    config: ServingConfig
    result: TrialResult
    values: list[float] | None
    constraints: list[float] | None
    feasible: bool
    predicted: dict[str, float] | None = None  # the performance model's figures for this config, when it has one

    @property
    def state(self) -> TrialState:
        if self.result.failure_reason == FailureReason.interrupted:
            return TrialState.interrupted
        return TrialState.complete if self.values is not None else TrialState.failed

    @property
    def failure_reason(self) -> str | None:
        """Why the trial is not trusted: its run's failure, a missing objective, or an unstable level."""
        if self.result.failure_reason:
            return self.result.failure_reason
        if self.values is None:
            return FailureReason.missing_objective
        # A complete trial whose level never stabilised keeps its figures but is marked: never trusted.
        return FailureReason.unstable if self.result.metrics.get("stable") is False else None

    @property
    def log_tail(self) -> str | None:
        return (self.result.server_log_tail or "")[-LOG_TAIL_CHARS:] or None

    @property
    def goodput(self) -> float:
        return goodput(self.result.metrics, self.values is not None and self.feasible)


def objective_values(metrics: dict[str, Any], study: Study) -> list[float] | None:
    """The objective vector from measured METRICS, or None if one is missing."""
    values = [metrics.get(name) for name in study.objectives]
    if any(v is None for v in values):
        return None
    return [float(v) for v in values]  # type: ignore[arg-type]


def constraint_values(
    metrics: dict[str, Any],
    slo_p99_ms: float | None,
    max_error_rate: float,
    min_achieved_fraction: float,
    limits: dict[str, float] | None = None,
) -> dict[str, float]:
    """Optuna constraints by name: each feasible when <= 0, its size saying how far off it is.

    LIMITS are a study's other [slo] bounds (spec.METRIC_LIMITS); a metric this host does not measure
    (GPU memory without a GPU) uses none of it."""
    p99 = metrics.get("latency_p99_ms")
    slo_gap = 0.0 if slo_p99_ms is None else (float("inf") if p99 is None else p99 - slo_p99_ms)
    offered, achieved = metrics.get("offered_rps"), metrics.get("achieved_rps")
    shortfall = 0.0
    if offered and achieved is not None:
        shortfall = min_achieved_fraction - achieved / offered  # open loop: under this share of the offer is overload
    return {
        "latency_p99_over_slo_ms": slo_gap,
        "error_rate_over_limit": float(metrics.get("error_rate", 1.0)) - max_error_rate,
        # An unstable measurement is never trusted: infeasible, so never on the front or exported.
        "unstable": 0.0 if metrics.get("stable", True) else 1.0,
        "offered_rate_shortfall": shortfall,
        # A variant whose answers differ from the original's beyond the study's bound: fast, but not the model.
        "accuracy_guard": 1.0 if (metrics.get("accuracy") or {}).get("problem") else 0.0,
        **{key: _limit_gap(metrics, key, bound) for key, bound in (limits or {}).items()},
    }


def _limit_gap(metrics: dict[str, Any], key: str, bound: float) -> float:
    metric, side = METRIC_LIMITS[key]
    value = metrics.get(metric)
    if value is None:
        # Unmeasured throughput is no throughput; an unmeasured resource (no GPU) is none used.
        return bound if side == "min" else 0.0
    return bound - float(value) if side == "min" else float(value) - bound


def is_feasible(
    metrics: dict[str, Any],
    slo_p99_ms: float | None,
    max_error_rate: float,
    min_achieved_fraction: float,
    limits: dict[str, float] | None = None,
) -> bool:
    """Whether a measurement met every constraint: the SLO, the error limit, stability, the offered rate, LIMITS."""
    named = constraint_values(metrics, slo_p99_ms, max_error_rate, min_achieved_fraction, limits)
    return all(v <= 0 for v in named.values())


def study_is_feasible(metrics: dict[str, Any], study: Study, min_achieved_fraction: float) -> bool:
    """Whether METRICS meet STUDY's SLO, error limit and [slo] limits."""
    return is_feasible(metrics, study.slo_p99_ms, study.max_error_rate, min_achieved_fraction, study.limits)


@dataclass
class TrialHooks:
    """Callbacks around each trial: the job records trials with them, the CLI draws progress."""

    begin: Callable[[int, ServingConfig], None] | None = None
    server_started: Callable[[int, int], None] | None = None
    progress: Callable[[int, ServingConfig, str], None] | None = None
    finished: Callable[[TunedTrial], None] | None = None
    # Whether a measurement may be stored as truth (the daemon refuses ones disturbed by foreign load);
    # a refused one is measured again, up to `remeasure` more times, then kept and flagged.
    accept: Callable[[TrialResult], bool] | None = None
    remeasure: int = 2
    # A one-line decision of the job worth a log line (where its first configs come from, why not the model's).
    said: Callable[[str], None] | None = None


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
        measure: Measure | None = None,
        cpus: int | None = None,
        planned: list[ServingConfig] | None = None,
        predict: Callable[[ServingConfig], dict[str, float]] | None = None,
    ) -> None:
        """MEASURE replaces live trials (benchmarks replay recorded ones); CPUS is the host's core count;
        PLANNED, the performance model's picks, go before the batching guide's first configs; PREDICT gives the
        model's figures for a config, stored beside each trial and checked against it (model_check)."""
        self.planned = planned
        self.predict = predict
        self.study = study
        self.model = model
        self.backend = backend
        self.space = grid_of(space) if study.sampler == "grid" else space
        self.settings = settings
        self.optuna = optuna.create_study(
            study_name=study_name,
            storage=storage,
            directions=list(study.objectives.values()),
            sampler=make_sampler(study.sampler, study.seed),
            load_if_exists=True,
        )
        self.optuna.set_metric_names(list(study.objectives))
        # The model's record so far lives in the study: a resumed job goes on judging it where it left off.
        self.check = ModelCheck()
        for t in self.optuna.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            self.check.add(t.user_attrs.get("predicted"), t.user_attrs.get("metrics") or {})
        self.drifted: str | None = self.optuna.user_attrs.get("model_drifted")
        self.cpus = cpus or os.cpu_count() or 1
        self._measure_config = measure or (
            lambda config, say, on_pid: run_trial(
                self.model, config, self.settings, self.backend, progress=say, on_server_start=on_pid
            )
        )

    def first_configs(self, previous: list[dict[str, Any]], budget: int) -> list[ServingConfig]:
        """What a fresh study measures first, at most BUDGET: TF Serving's defaults, the PREVIOUS front's configs
        (unreadable ones skipped), then the sampler's informed seeds."""
        configs = [ServingConfig()]
        for entry in previous:
            try:
                configs.append(config_from_dict(entry.get("config", {})))
            except (AutotuneError, TypeError):
                continue
        if self.study.sampler == "grid":
            configs = configs[:1]  # a sweep measures its own grid; off-grid configs would only add to it
        elif self.study.sampler == "autotune":
            # The model's picks first (tagged: a model found to drift does not spend trials on them), then the
            # guide's seeds: the two miss in opposite places, and the guide's find what the model's noise hides.
            configs += self.planned or []
            configs += allowance_seeds(self.space)
            configs += heuristic_seeds(self.space, self.cpus, self.settings.concurrency)
        unique = [c for i, c in enumerate(configs) if c not in configs[:i]]
        # No more than the budget: configs left WAITING would sit in the Optuna study forever.
        return unique[:budget]

    def enqueue(self, configs: list[ServingConfig]) -> None:
        """Measure these configs first (defaults, a previous Pareto set, the model's picks: tagged)."""
        planned = self.planned or []
        for config in configs:
            attrs = {PLANNED_ATTR: True} if config in planned and config != ServingConfig() else None
            self.optuna.enqueue_trial(params_of(config, self.space), user_attrs=attrs, skip_if_exists=True)

    def run(
        self,
        trials: int,
        minutes: float,
        hooks: TrialHooks | None = None,
        previous: list[dict[str, Any]] | None = None,
    ) -> list[TunedTrial]:
        """Run up to TRIALS trials within MINUTES (a fresh study starts from `first_configs`, warm from PREVIOUS);
        stops early when a trial is interrupted."""
        hooks = hooks or TrialHooks()
        if not self.optuna.trials:
            self.enqueue(self.first_configs(previous or [], trials))
        deadline = time.monotonic() + minutes * 60
        done: list[TunedTrial] = []
        while len(done) < trials:
            if time.monotonic() >= deadline:
                break
            trial = self.optuna.ask()
            if self.drifted and trial.user_attrs.get(PLANNED_ATTR):
                # The model's pick, queued before the model was found to drift: not worth a live trial now.
                trial.set_user_attr("failure_reason", FailureReason.skipped)
                self.optuna.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            try:
                config, result = self._measure(trial, hooks)
            except BaseException:
                # Ctrl-C (or a crash) between trials must not leave the Optuna trial RUNNING forever.
                trial.set_user_attr("failure_reason", FailureReason.interrupted)
                self.optuna.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
            tuned = self._tell(trial, config, result)
            done.append(tuned)
            if hooks.finished:
                hooks.finished(tuned)
            self._judge_model(tuned, hooks)
            if result.failure_reason == FailureReason.interrupted:
                break
            if isinstance(self.optuna.sampler, GridSweep) and self.optuna.sampler.exhausted:
                break
        return done

    def _measure(self, trial: optuna.Trial, hooks: TrialHooks) -> tuple[ServingConfig, TrialResult]:
        config = suggest(trial, self.space)
        n = trial.number
        if hooks.begin:
            hooks.begin(n, config)
        progress, started = hooks.progress, hooks.server_started
        say = (lambda msg: progress(n, config, msg)) if progress else None
        on_pid = (lambda pid: started(n, pid)) if started else None
        attempt, accepted = 0, False
        while True:
            result = self._measure_config(config, say, on_pid)
            accepted = not result.ok or hooks.accept is None or hooks.accept(result)
            if accepted or attempt == hooks.remeasure:
                break
            attempt += 1
        if attempt:
            result.metrics["remeasured"] = attempt
        if not accepted:
            result.metrics["interference"] = True
        return config, result

    def _judge_model(self, tuned: TunedTrial, hooks: TrialHooks) -> None:
        """After each trial of a model-seeded job: has the model drifted from what the trials measure?"""
        if self.drifted or tuned.predicted is None or tuned.values is None:
            return
        self.check.add(tuned.predicted, tuned.result.metrics)
        self.drifted = self.check.drift()
        if self.drifted:
            self.optuna.set_user_attr("model_drifted", self.drifted)
            if hooks.said:
                hooks.said(self.drifted)

    def _predicted(self, config: ServingConfig) -> dict[str, float] | None:
        if self.predict is None:
            return None
        try:
            return self.predict(config)
        except AutotuneError:  # a config the model cannot simulate (a variant it has no profile of)
            return None

    def _tell(self, trial: optuna.Trial, config: ServingConfig, result: TrialResult) -> TunedTrial:
        trial.set_user_attr("config", config.to_dict())
        trial.set_user_attr("metrics", result.metrics)
        # Kept beside the measurement, not handed to the sampler: TPE stays model-free, so a model that
        # drifts can mislead only the few first configs, which the drift check then stops.
        predicted = self._predicted(config)
        trial.set_user_attr("predicted", predicted)
        values = objective_values(result.metrics, self.study) if result.ok else None
        if values is None:
            failed = TunedTrial(trial.number, config, result, None, None, False, predicted)
            trial.set_user_attr("failure_reason", failed.failure_reason)
            trial.set_user_attr("failure_message", result.failure_message or "an objective was not measured")
            trial.set_user_attr("server_log_tail", failed.log_tail or "")
            self.optuna.tell(trial, state=optuna.trial.TrialState.FAIL)
            return failed
        study, fraction = self.study, self.settings.min_achieved_fraction
        named = constraint_values(result.metrics, study.slo_p99_ms, study.max_error_rate, fraction, study.limits)
        constraints = list(named.values())
        trial.set_user_attr("constraints", named)
        for name, value in named.items():
            trial.set_constraint(name, value)
        self.optuna.tell(trial, values)
        feasible = all(c <= 0 for c in constraints)
        return TunedTrial(trial.number, config, result, values, constraints, feasible, predicted)
