"""Tuning jobs: enqueue one (recorded in the store), then execute it here or in the daemon.

A job warm-starts from the Pareto set of the last job of the same model on the
same host fingerprint (a retune: on any host, so drift shows), always measures
TF Serving's defaults first, and resumes where it stopped after a crash: trials
already complete or failed count against the budget, interrupted ones are redone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import optuna

from autotune.compare import COMPARED_METRICS, live_measure
from autotune.confirm import confirm_front
from autotune.errors import AutotuneError
from autotune.fingerprint import fingerprint, host_info
from autotune.knobs import ServingConfig, config_from_dict
from autotune.measure import MeasureSettings, TrialResult, run_trial
from autotune.model_check import STORED
from autotune.models.resolve import ModelRef, resolve_model
from autotune.multimodel import check_mix
from autotune.pareto import default_pick, pick_index
from autotune.servers.backends import MULTI_MODEL_DOCKER, Backend, backend_from_options, resolve_backend
from autotune.significance import DEFAULT_MIN_EFFECT, StopRule
from autotune.space import Host, build_space
from autotune.spec import Study
from autotune.states import FailureReason, JobState, Trigger
from autotune.store import PreviousFront, Store
from autotune.store.db import optuna_storage
from autotune.store.schema import JobRow
from autotune.sweep import sweep
from autotune.traffic.requests import load_requests
from autotune.tuner import Measure, TrialHooks, TunedTrial, Tuner, study_is_feasible

if TYPE_CHECKING:
    from autotune.plan import Predictor

STUDY_PREFIX = "autotune"


@dataclass
class JobResult:
    job_id: int
    study_name: str
    trials: list[TunedTrial]
    pareto: list[dict[str, Any]]
    state: JobState


@dataclass
class JobControl:
    """How the runner of a job steers it: a user's cancel, a daemon stopping, the resource gate."""

    cancelled: Callable[[], bool] = lambda: False
    stopping: Callable[[], bool] = lambda: False
    accept: Callable[[Any], bool] | None = None
    before_trial: Callable[[], None] | None = None  # e.g. wait for the resource gate

    def should_stop(self) -> bool:
        return self.cancelled() or self.stopping()


# Study fields the measurement knows under another name; every field the two share by name is carried as is.
_MEASURED_AS = {"slo_p99_ms": "slo_ms", "requests": "requests_file"}


def study_settings(study: Study, **overrides: Any) -> MeasureSettings:
    """How a study's trials are measured: its load, SLO, guard, prices and windows, plus overrides."""
    measured = {f.name for f in fields(MeasureSettings)}
    carried = {
        _MEASURED_AS.get(f.name, f.name): getattr(study, f.name)
        for f in fields(study)
        if _MEASURED_AS.get(f.name, f.name) in measured
    }
    return MeasureSettings(**{**carried, **asdict(study.windows), **overrides})


def trial_fields(t: TunedTrial) -> dict[str, Any]:
    """A tuned trial as a store row's fields."""
    return {
        "state": t.state,
        "metrics": t.result.metrics,
        "objective_values": t.values,
        "constraints": t.constraints,
        "feasible": t.feasible,
        "levels": [asdict(level) for level in t.result.levels],
        "argv": t.result.argv,
        "failure_reason": t.failure_reason,
        "failure_message": t.result.failure_message,
        "server_log_tail": t.log_tail,
        **{f"predicted_{k}": (t.predicted or {}).get(k) for k in STORED},
    }


def enqueue_job(
    study: Study,
    trials: int,
    minutes: float,
    settings: MeasureSettings,
    backend: Backend | None = None,
    state: JobState = JobState.queued,
    trigger: Trigger = Trigger.manual,
) -> int:
    """Resolve the model (building a built-in if needed) and record a job pinned to this host."""
    backend = backend or resolve_backend(study.backend)
    model = resolve_model(study.model, study.signature)
    load_requests(settings.requests_file, model.signature, settings.batch)  # a bad file fails here, not in a trial
    if settings.mix:
        if not backend.serves_models_config:
            raise AutotuneError(MULTI_MODEL_DOCKER)
        # Every model is built (a built-in) and checked now, not in the first trial.
        check_mix(settings.mix, {spec: resolve_model(spec).name for spec in settings.mix})
    info = host_info()
    store = Store()
    name = f"{STUDY_PREFIX}/{model.name}/{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S.%f')}"
    return store.create_job(
        model_id=store.model(model),
        host_id=store.host(info, fingerprint(info)),
        study_name=name,
        study=asdict(study),
        settings=asdict(settings),
        backend=backend.name,
        trials_total=trials,
        minutes=minutes,
        state=state,
        trigger=trigger,
        backend_options=backend.to_options(),
    )


def is_interrupted(t: optuna.trial.FrozenTrial) -> bool:
    """Whether an Optuna trial measured nothing: failed as interrupted, or without a reason, which is how
    `_fail_stale_trials` closes a trial whose process died (Optuna's public API sets no attributes on it)."""
    reason = t.user_attrs.get("failure_reason", FailureReason.interrupted)
    return t.state == optuna.trial.TrialState.FAIL and reason == FailureReason.interrupted


def _fail_stale_trials(study: optuna.Study) -> None:
    # A process killed mid-trial leaves its Optuna trial RUNNING; nobody will ever tell it.
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)


def _requeue_interrupted(study: optuna.Study) -> None:
    # An interrupted trial measured nothing: its config (the defaults baseline, a seed, a warm-start entry)
    # is measured again when the job resumes, rather than lost to the interruption.
    trials = study.get_trials(deepcopy=False)
    state = optuna.trial.TrialState

    def params(t: optuna.trial.FrozenTrial) -> dict:
        # A WAITING (enqueued) trial has no params yet: what it will measure sits in its fixed_params.
        return t.system_attrs.get("fixed_params", {}) if t.state == state.WAITING else t.params

    settled = [params(t) for t in trials if not is_interrupted(t) and t.state != state.RUNNING]
    for t in trials:
        if is_interrupted(t) and t.params and t.params not in settled:
            study.enqueue_trial(t.params, skip_if_exists=False)
            settled.append(t.params)


# How much of the predicted front a job keeps for its report: enough to draw it, not thousands of rows.
FRONT_KEPT = 50


class _JobRunner:
    """One run of a claimed job: its tuner, each trial recorded as it happens, then the front confirmed."""

    def __init__(self, job_id: int, hooks: TrialHooks, control: JobControl, measure: Measure | None = None) -> None:
        self.store = Store()
        job = self.store.job(job_id)
        if job is None:
            raise AutotuneError(f"job {job_id} does not exist")
        self.job: JobRow = job
        self.study = job.spec
        self.hooks, self.control, self.measure = hooks, control, measure
        self.retune = Trigger(job.trigger).retunes  # re-measures the previous front from any host, records drift
        self.previous: PreviousFront | None = None

    def run(self) -> JobResult:
        """Run the job to its budget; it ends done, cancelled, failed, or handed back to the queue."""
        job, control = self.job, self.control
        state, error = JobState.failed, None
        done: list[TunedTrial] = []
        confirmed: list[dict[str, Any]] | None = None
        try:
            settings = job.measure_settings
            backend = backend_from_options(job.backend_options, self.study.backend)
            backend.prepare()  # beside the tuner's set-up (a profile, a plan)
            model = resolve_model(self.study.model, self.study.signature)
            tuner = self._tuner(model, backend, settings)
            remaining = job.trials_total - self.store.trial_count(job.id)
            hooks = TrialHooks(
                self._begin,
                lambda n, pid: self.store.server_started(job.id, n, pid),
                self._progress,
                self._finished,
                control.accept,
                said=self._say,
            )
            entries = self.previous.entries if self.previous else []
            done = tuner.run(remaining, job.minutes, hooks, entries) if remaining > 0 else []
            if any(t.result.failure_reason == FailureReason.interrupted for t in done):
                state = JobState.queued if control.stopping() else JobState.cancelled
            else:
                state = JobState.done
                confirmed = self._confirm(model, settings, backend)
        except KeyboardInterrupt:
            state = JobState.queued if control.stopping() else JobState.cancelled
            if not control.stopping():
                raise
        except AutotuneError as exc:
            error = str(exc)
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            pareto = self.store.finish_job(job.id, state, error, confirmed)
        return JobResult(job.id, job.study_name, done, pareto, state)

    def _tuner(self, model: ModelRef, backend: Backend, settings: MeasureSettings) -> Tuner:
        job = self.job
        host = Host.detect()
        if backend.enforces_cpu_quota:  # no cgroup quota needed from this host
            host = replace(host, cpu_quota_problem=None)
        space = build_space(self.study.space, host, tuple(self.study.objectives))
        if "cpus" in space and host.cpu_quota_problem is not None:
            self._say(f"cpus: whole cores only, {host.cpu_quota_problem}")
        # Only the autotune sampler takes first configs: another sampler's job is spared the profile.
        seeded = self.study.seeds == "model" and self.study.sampler == "autotune"
        predictor = self._predictor(model, settings) if seeded else None
        if predictor is not None:
            from autotune.plan import guarded_space

            space, failing = guarded_space(predictor.profile, self.study, space, settings.requests_file)
            for variant, why in failing.items():
                self._say(f"space: no {variant}: {why} on the inputs a trial checks it on (the profile's check)")
        storage = optuna_storage(self.store.url)
        tuner = Tuner(self.study, model, backend, space, settings, storage, job.study_name, measure=self.measure)
        _fail_stale_trials(tuner.optuna)
        _requeue_interrupted(tuner.optuna)
        self.previous = self.store.previous_front(job, any_host=self.retune)
        tuner.predict = predictor
        if not tuner.optuna.trials:
            # Only a fresh study takes first configs: a resumed job has nothing to plan.
            if predictor is not None:
                tuner.planned = self._planned(predictor, space)
            attrs = {"host": job.host.info, "host_fingerprint": job.host.fingerprint, "job_id": job.id}
            for key, value in {**attrs, "model_path": str(model.base_path)}.items():
                tuner.optuna.set_user_attr(key, value)
        return tuner

    def _predictor(self, model: ModelRef, settings: MeasureSettings) -> Predictor | None:
        """The model's predictions at this job's load, from this host's stored profile, measured first when there is
        none (or it lacks a variant of the space); None (said in one line) when that fails."""
        from autotune.perfmodel.measure import stored_profile
        from autotune.plan import Predictor

        say = self._say
        if settings.mix:
            say("seeds: the batching guide's, not the model's: the model predicts a server of one model, not a mix")
            return None
        try:
            profile, cached = stored_profile(
                model,
                self.job.host.fingerprint,
                self.store.url,
                (settings.protocol,),
                self.study.model_variants,
                say,
                budget_s=self.study.profile_s,
            )
            if not cached:
                say(f"seeds: profiled {model.name} on this host in {profile.seconds:.0f} s (kept for later jobs)")
            return Predictor.of(profile, self.study, settings.protocol)
        except AutotuneError as exc:
            say(f"seeds: the batching guide's, not the model's: {exc}")
            return None

    def _planned(self, predictor: Predictor, space: dict) -> list[ServingConfig] | None:
        """The performance model's first configs for this job, or None (said in one line) to use the guide's."""
        from autotune.plan import evenly, make_plan

        try:
            plan = make_plan(predictor.profile, self.study, space, predictor.protocol)
        except AutotuneError as exc:
            self._say(f"seeds: the batching guide's, not the model's: {exc}")
            return None
        for variant, why in plan.left_out.items():
            self._say(f"seeds: none of {variant}: {why}")
        if not plan.seeds:
            self._say("seeds: the model predicts no feasible config; the batching guide's instead")
            return None
        on_front = len(plan.seeds) - len(plan.seeds_behind_front)
        self._say(
            f"seeds: {len(plan.seeds)} the model predicts apart, {on_front} from the model's predicted front "
            f"({plan.coverage})"
        )
        self.store.planned(self.job.id, [p.to_json() for p in evenly(plan.front, FRONT_KEPT)])
        return [p.config for p in plan.seeds]

    def _say(self, msg: str) -> None:
        """A decision of the job in one line: on the progress line, and where the caller logs (terminal, daemon log)."""
        self._progress(-1, ServingConfig(), msg)
        if self.hooks.said:
            self.hooks.said(msg)

    def _begin(self, n: int, config: ServingConfig) -> None:
        if self.control.before_trial:
            self.control.before_trial()
        if self.control.should_stop():
            raise KeyboardInterrupt
        self.store.begin_trial(self.job.id, n, config.to_dict())
        if self.hooks.begin:
            self.hooks.begin(n, config)

    def _progress(self, n: int, config: ServingConfig, msg: str) -> None:
        if self.control.should_stop():
            raise KeyboardInterrupt  # run_trial stops its server and reports the trial interrupted
        if self.hooks.progress:
            self.hooks.progress(n, config, msg)

    def _finished(self, t: TunedTrial) -> None:
        self.store.finish_trial(self.job.id, t.number, **trial_fields(t))
        if self.previous and self.retune:
            self.store.record_drift(self.job, self.previous, t.config.to_dict(), t.result.metrics, t.feasible)
        if self.hooks.finished:
            self.hooks.finished(t)

    def _confirm(self, model: ModelRef, settings: MeasureSettings, backend: Backend) -> list[dict[str, Any]] | None:
        if self.study.confirm_repeats <= 0:
            return None
        entries = self.store.front(self.job.id)
        measure = live_measure(model, settings, backend)

        def say(msg: str) -> None:
            self._progress(-1, ServingConfig(), f"confirm {msg}")

        def config_of(entry: dict[str, Any]) -> ServingConfig:
            return config_from_dict(entry["config"])

        def feasible(medians: dict[str, Any]) -> bool:
            return study_is_feasible(medians, self.study, settings.min_achieved_fraction)

        objectives = list(self.study.objectives)
        study = self.study
        rule = StopRule(
            study.confirm_repeats, max(study.confirm_repeats, study.confirm_max_repeats), study.confirm_precision
        )
        effects = {m: study.min_effect.get(m, DEFAULT_MIN_EFFECT) for m in COMPARED_METRICS}
        confirmed = confirm_front(entries, rule, measure, config_of, objectives, say, feasible, effects)
        checked = [e for e in confirmed if "confirmation" in e]
        if checked:  # the snapshot keeps them too; this record is the one every compare shares
            self.store.record_comparison("confirm", model.name, {"entries": checked}, job_id=self.job.id)
        if confirmed:
            # The row export deploys by default, ramped on a fresh server: where its SLO breaks (report draws it).
            picked = confirmed[pick_index([e["metrics"] for e in confirmed], default_pick(objectives))]

            def ramp(config: ServingConfig, ramp_settings: MeasureSettings) -> TrialResult:
                return run_trial(model, config, ramp_settings, backend, progress=lambda m: say(f"sweep: {m}"))

            picked["sweep"] = sweep(config_of(picked), settings, ramp)
        return confirmed


def execute_job(
    job_id: int, hooks: TrialHooks | None = None, control: JobControl | None = None, measure: Measure | None = None
) -> JobResult:
    """Run (or resume) a claimed job to its budget; the job ends done, cancelled, failed, or requeued. MEASURE
    replaces the search's live trials (a replay, for tests of what a job does around them); confirmation stays live."""
    return _JobRunner(job_id, hooks or TrialHooks(), control or JobControl(), measure).run()


def run_job(
    study: Study,
    trials: int,
    minutes: float,
    settings: MeasureSettings,
    hooks: TrialHooks | None = None,
    backend: Backend | None = None,
    measure: Measure | None = None,
) -> JobResult:
    """A foreground job: recorded as running by this process, executed here (MEASURE: as execute_job's)."""
    job_id = enqueue_job(study, trials, minutes, settings, backend, state=JobState.running)
    return execute_job(job_id, hooks, measure=measure)
