"""One tuning job: a study run on this host, recorded in the store as it goes.

The job warm-starts from the Pareto set of the last job of the same model on the
same host fingerprint, and always measures TF Serving's defaults first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from autotune.errors import AutotuneError
from autotune.fingerprint import fingerprint, host_info
from autotune.knobs import KNOBS, ServingConfig, validate
from autotune.models.resolve import resolve_model
from autotune.servers.backends import Backend, resolve_backend
from autotune.space import Host, build_space
from autotune.spec import Study
from autotune.store.db import optuna_storage
from autotune.store.queries import previous_front
from autotune.store.records import Store
from autotune.trial import MeasureSettings
from autotune.tuner import TrialHooks, TunedTrial, Tuner

STUDY_PREFIX = "autotune"


@dataclass
class JobResult:
    job_id: int
    study_name: str
    trials: list[TunedTrial]
    pareto: list[dict[str, Any]]
    state: str


def config_from_dict(values: dict[str, Any]) -> ServingConfig:
    """Rebuild a ServingConfig from a stored config dict."""
    values = {k: v for k, v in values.items() if k in KNOBS}
    if "allowed_batch_sizes" in values:
        values["allowed_batch_sizes"] = tuple(values["allowed_batch_sizes"])
    return validate(ServingConfig(**values))


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
        "failure_reason": r.failure_reason or (None if t.values is not None else "missing_objective"),
        "failure_message": r.failure_message,
        "server_log_tail": (r.server_log_tail or "")[-4000:] or None,
    }


def run_job(
    study: Study,
    trials: int,
    minutes: float,
    settings: MeasureSettings,
    hooks: TrialHooks | None = None,
    backend: Backend | None = None,
) -> JobResult:
    """Resolve everything, record the job, warm-start, run the trials, freeze the Pareto set."""
    hooks = hooks or TrialHooks()
    backend = backend or resolve_backend(study.backend)
    model = resolve_model(study.model, study.signature)
    space = build_space(study.space, Host.detect())
    info = host_info()
    host_fp = fingerprint(info)
    store = Store()
    host_id = store.host(info, host_fp)
    model_id = store.model(model)
    warm = warm_start(previous_front(model.name, host_fp, store.url))
    name = f"{STUDY_PREFIX}/{model.name}/{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S.%f')}"
    tuner = Tuner(study, model, backend, space, settings, optuna_storage(store.url), name)
    for key, value in {"host": info, "host_fingerprint": host_fp, "model_path": str(model.base_path)}.items():
        tuner.optuna.set_user_attr(key, value)
    job_id = store.create_job(
        model_id=model_id,
        host_id=host_id,
        study_name=name,
        study=asdict(study),
        settings=asdict(settings),
        backend=backend.name,
        trials_total=trials,
        minutes=minutes,
    )
    tuner.optuna.set_user_attr("job_id", job_id)
    tuner.enqueue(warm)

    def begin(n: int, config: ServingConfig) -> None:
        store.begin_trial(job_id, n, config.to_dict())
        if hooks.begin:
            hooks.begin(n, config)

    def server_started(n: int, pid: int) -> None:
        store.server_started(job_id, n, pid)

    def finished(t: TunedTrial) -> None:
        store.finish_trial(job_id, t.number, **trial_fields(t))
        if hooks.finished:
            hooks.finished(t)

    state, error = "failed", None
    done: list[TunedTrial] = []
    try:
        done = tuner.run(trials, minutes, TrialHooks(begin, server_started, hooks.progress, finished))
        state = "cancelled" if any(t.result.failure_reason == "interrupted" for t in done) else "done"
    except KeyboardInterrupt:
        state = "cancelled"
        raise
    except Exception as exc:
        error = str(exc) or type(exc).__name__
        raise
    finally:
        pareto = store.finish_job(job_id, state, error)
    return JobResult(job_id, name, done, pareto, state)
