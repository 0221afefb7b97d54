"""Tuning jobs: enqueue one (recorded in the store), then execute it here or in the daemon.

A job warm-starts from the Pareto set of the last job of the same model on the
same host fingerprint (a retune: on any host, so drift shows), always measures
TF Serving's defaults first, and resumes where it stopped after a crash: trials
already complete or failed count against the budget, interrupted ones are redone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import optuna

from autotune.compare import live_measure
from autotune.confirm import confirm_front
from autotune.errors import AutotuneError
from autotune.fingerprint import fingerprint, host_info
from autotune.knobs import KNOBS, ServingConfig, validate
from autotune.models.resolve import resolve_model
from autotune.servers.backends import Backend, local_backend, resolve_backend
from autotune.space import Host, build_space
from autotune.spec import Study, study_from_dict
from autotune.store.db import optuna_storage
from autotune.store.drift import record_drift
from autotune.store.queries import previous_front_job
from autotune.store.queue import Queue
from autotune.store.records import Store
from autotune.trial import MeasureSettings
from autotune.tuner import TrialHooks, TunedTrial, Tuner

STUDY_PREFIX = "autotune"
RETUNE_TRIGGERS = ("retune", "schedule")


@dataclass
class JobResult:
    job_id: int
    study_name: str
    trials: list[TunedTrial]
    pareto: list[dict[str, Any]]
    state: str


@dataclass
class JobControl:
    """How the runner of a job steers it: a user's cancel, a daemon stopping, the resource gate."""

    cancelled: Callable[[], bool] = lambda: False
    stopping: Callable[[], bool] = lambda: False
    accept: Callable[[Any], bool] | None = None
    before_trial: Callable[[], None] | None = None  # e.g. wait for the resource gate


def study_settings(study: Study, **overrides: Any) -> MeasureSettings:
    """How a study's trials are measured: its load and SLO, plus window overrides."""
    return MeasureSettings(
        protocol=study.protocol,
        concurrency=study.concurrency,
        rate=study.rate,
        slo_ms=study.slo_p99_ms,
        max_error_rate=study.max_error_rate,
        **overrides,
    )


def config_from_dict(values: dict[str, Any]) -> ServingConfig:
    """Rebuild a ServingConfig from a stored config dict."""
    values = {k: v for k, v in values.items() if k in KNOBS}
    if "allowed_batch_sizes" in values:
        values["allowed_batch_sizes"] = tuple(values["allowed_batch_sizes"])
    return validate(ServingConfig(**values))


def _entry_config(entry: dict[str, Any]) -> ServingConfig:
    return config_from_dict(entry["config"])


def warm_start(entries: list[dict[str, Any]]) -> list[ServingConfig]:
    """TF Serving's defaults, then the previous Pareto configs (unreadable ones skipped)."""
    configs = [ServingConfig()]
    for entry in entries:
        try:
            config = config_from_dict(entry.get("config", {}))
        except (AutotuneError, TypeError):
            continue
        if config not in configs:
            configs.append(config)
    return configs


def _unmeasured_reason(t: TunedTrial) -> str | None:
    # A complete trial whose level never stabilised keeps its figures but is marked: never trusted.
    if t.values is None:
        return "missing_objective"
    return "unstable" if t.result.metrics.get("stable") is False else None


def trial_fields(t: TunedTrial) -> dict[str, Any]:
    """A tuned trial as a store row's fields."""
    r = t.result
    if r.failure_reason == "interrupted":
        state = "interrupted"
    else:
        state = "complete" if t.values is not None else "failed"
    return {
        "state": state,
        "metrics": r.metrics,
        "objective_values": t.values,
        "constraints": t.constraints,
        "feasible": t.feasible,
        "levels": [asdict(level) for level in r.levels],
        "argv": r.argv,
        "failure_reason": r.failure_reason or _unmeasured_reason(t),
        "failure_message": r.failure_message,
        "server_log_tail": (r.server_log_tail or "")[-4000:] or None,
    }


def backend_options(backend: Backend) -> dict[str, Any]:
    """A backend as stored with a job."""
    return {"name": backend.name, "program": list(backend.program), "image": backend.image, "gpus": backend.gpus}


def backend_from_options(options: dict[str, Any], study: Study) -> Backend:
    """The backend a queued job asked for; the local server runs on this interpreter."""
    if not options:
        return resolve_backend(study.backend)
    if options["name"] == "local":
        return local_backend()
    return Backend(options["name"], tuple(options["program"]), options.get("image"), bool(options.get("gpus")))


def enqueue_job(
    study: Study,
    trials: int,
    minutes: float,
    settings: MeasureSettings,
    backend: Backend | None = None,
    state: str = "queued",
    trigger: str = "manual",
) -> int:
    """Resolve the model (building a built-in if needed) and record a job pinned to this host."""
    backend = backend or resolve_backend(study.backend)
    model = resolve_model(study.model, study.signature)
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
        backend_options=backend_options(backend),
    )


def _fail_stale_optuna_trials(study: optuna.Study) -> None:
    # A process killed mid-trial leaves its Optuna trial RUNNING; nobody will ever tell it.
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "failure_reason", "interrupted")
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)


def _requeue_interrupted(study: optuna.Study) -> None:
    # An interrupted trial measured nothing: its config (the defaults baseline, a seed, a warm-start entry)
    # is measured again when the job resumes, rather than lost to the interruption.
    trials = study.get_trials(deepcopy=False)
    state = optuna.trial.TrialState

    def interrupted(t: optuna.trial.FrozenTrial) -> bool:
        return t.state == state.FAIL and t.user_attrs.get("failure_reason") == "interrupted"

    def params(t: optuna.trial.FrozenTrial) -> dict:
        # A WAITING (enqueued) trial has no params yet: what it will measure sits in its fixed_params.
        return t.system_attrs.get("fixed_params", {}) if t.state == state.WAITING else t.params

    settled = [params(t) for t in trials if not interrupted(t) and t.state != state.RUNNING]
    for t in trials:
        if interrupted(t) and t.params and t.params not in settled:
            study.enqueue_trial(t.params, skip_if_exists=False)
            settled.append(t.params)


def execute_job(job_id: int, hooks: TrialHooks | None = None, control: JobControl | None = None) -> JobResult:
    """Run (or resume) a claimed job to its budget; the job ends done, cancelled, failed, or requeued."""
    hooks = hooks or TrialHooks()
    control = control or JobControl()
    store = Store()
    job = Queue(store.url).job(job_id)
    if job is None:
        raise AutotuneError(f"job {job_id} does not exist")
    study = study_from_dict(job.study)
    state, error = "failed", None
    done: list[TunedTrial] = []
    confirmed: list[dict[str, Any]] | None = None
    try:
        settings = MeasureSettings(**job.settings)
        backend = backend_from_options(job.backend_options, study)
        model = resolve_model(study.model, study.signature)
        space = build_space(study.space, Host.detect())
        tuner = Tuner(study, model, backend, space, settings, optuna_storage(store.url), job.study_name)
        _fail_stale_optuna_trials(tuner.optuna)
        _requeue_interrupted(tuner.optuna)
        previous = previous_front_job(job, any_host=job.trigger in RETUNE_TRIGGERS, url=store.url)
        if not tuner.optuna.trials:
            for key, value in {"host": job.host.info, "host_fingerprint": job.host.fingerprint}.items():
                tuner.optuna.set_user_attr(key, value)
            tuner.optuna.set_user_attr("model_path", str(model.base_path))
            tuner.optuna.set_user_attr("job_id", job_id)
            # No more than the budget: configs left WAITING would sit in the Optuna study forever.
            firsts = warm_start(previous[1] if previous else []) + tuner.first_configs()[1:]
            tuner.enqueue(firsts[: job.trials_total])

        def begin(n: int, config: ServingConfig) -> None:
            if control.before_trial:
                control.before_trial()
            if control.cancelled() or control.stopping():
                raise KeyboardInterrupt
            store.begin_trial(job_id, n, config.to_dict())
            if hooks.begin:
                hooks.begin(n, config)

        def finished(t: TunedTrial) -> None:
            store.finish_trial(job_id, t.number, **trial_fields(t))
            if previous and job.trigger in RETUNE_TRIGGERS:
                record_drift(store.url, job, previous[0], previous[1], t.config.to_dict(), t.result.metrics, t.feasible)
            if hooks.finished:
                hooks.finished(t)

        def progress(n: int, config: ServingConfig, msg: str) -> None:
            if control.cancelled() or control.stopping():
                raise KeyboardInterrupt  # run_trial stops its server and reports the trial interrupted
            if hooks.progress:
                hooks.progress(n, config, msg)

        remaining = job.trials_total - store.trial_count(job_id)
        run_hooks = TrialHooks(
            begin, lambda n, pid: store.server_started(job_id, n, pid), progress, finished, control.accept
        )
        done = tuner.run(remaining, job.minutes, run_hooks) if remaining > 0 else []
        interrupted = any(t.result.failure_reason == "interrupted" for t in done)
        state = "done" if not interrupted else ("queued" if control.stopping() else "cancelled")
        if state == "done" and study.confirm_repeats > 0:

            def say(msg: str) -> None:
                progress(-1, ServingConfig(), f"confirm {msg}")

            measure = live_measure(model, settings, backend)
            confirmed = confirm_front(
                store.front(job_id), study.confirm_repeats, measure, _entry_config, list(study.objectives), say
            )
    except KeyboardInterrupt:
        state = "queued" if control.stopping() else "cancelled"
        if not control.stopping():
            raise
    except AutotuneError as exc:
        error = str(exc)
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        pareto = store.finish_job(job_id, state, error, confirmed)
    return JobResult(job_id, job.study_name, done, pareto, state)


def run_job(
    study: Study,
    trials: int,
    minutes: float,
    settings: MeasureSettings,
    hooks: TrialHooks | None = None,
    backend: Backend | None = None,
) -> JobResult:
    """A foreground job: recorded as running by this process, executed here."""
    job_id = enqueue_job(study, trials, minutes, settings, backend, state="running")
    return execute_job(job_id, hooks)
