"""One tuning job: a study run on this host, warm-started from the last one on the same hardware."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from autotune.errors import AutotuneError
from autotune.fingerprint import fingerprint, host_info
from autotune.knobs import KNOBS, ServingConfig, validate
from autotune.models.resolve import resolve_model, served_name
from autotune.servers.backends import resolve_backend
from autotune.space import Host, build_space
from autotune.spec import Study
from autotune.storage import optuna_storage
from autotune.trial import MeasureSettings
from autotune.tuner import TunedTrial, Tuner, pareto_trials

STUDY_PREFIX = "autotune"


@dataclass
class JobResult:
    study_name: str
    trials: list[TunedTrial]
    pareto: list[optuna.trial.FrozenTrial]


def config_from_attrs(attrs: dict[str, Any]) -> ServingConfig:
    """Rebuild a ServingConfig from a trial's stored config dict."""
    values = {k: v for k, v in attrs.items() if k in KNOBS}
    if "allowed_batch_sizes" in values:
        values["allowed_batch_sizes"] = tuple(values["allowed_batch_sizes"])
    return validate(ServingConfig(**values))


def studies_of(storage: optuna.storages.BaseStorage, model: str) -> list[str]:
    """Names of the studies of MODEL, oldest first (names carry their start time)."""
    prefix = f"{STUDY_PREFIX}/{model}/"
    return sorted(s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith(prefix))


def latest_study(spec: str) -> optuna.Study:
    """The latest tuning job of a model; a clear error if it was never tuned."""
    storage = optuna_storage()
    names = studies_of(storage, served_name(spec))
    if not names:
        raise AutotuneError(f"model '{served_name(spec)}' has not been tuned yet (run: autotune start --model {spec})")
    return optuna.load_study(study_name=names[-1], storage=storage)


def run_job(
    study: Study,
    trials: int,
    minutes: float,
    settings: MeasureSettings,
    progress: Callable[[int, ServingConfig, str], None] | None = None,
    on_trial: Callable[[TunedTrial], None] | None = None,
) -> JobResult:
    """Resolve everything, warm-start from the previous study of this model on this host, run."""
    backend = resolve_backend(study.backend)
    model = resolve_model(study.model, study.signature)
    host = Host.detect()
    space = build_space(study.space, host)
    info = host_info()
    host_fp = fingerprint(info)
    storage = optuna_storage()
    previous = studies_of(storage, model.name)
    name = f"{STUDY_PREFIX}/{model.name}/{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S.%f')}"
    tuner = Tuner(study, model, backend, space, settings, storage, name)
    tuner.optuna.set_user_attr("host", info)
    tuner.optuna.set_user_attr("host_fingerprint", host_fp)
    tuner.optuna.set_user_attr("model_path", str(model.base_path))
    tuner.optuna.set_user_attr("backend", backend.name)
    tuner.optuna.set_user_attr("study_source", study.source)
    warm: list[ServingConfig] = [ServingConfig()]
    if previous:
        last = optuna.load_study(study_name=previous[-1], storage=storage)
        if last.user_attrs.get("host_fingerprint") == host_fp:
            for t in pareto_trials(last):
                try:
                    config = config_from_attrs(t.user_attrs.get("config", {}))
                except (AutotuneError, TypeError):
                    continue
                if config not in warm:
                    warm.append(config)
    tuner.enqueue(warm)
    done = tuner.run(trials, minutes, progress=progress, on_trial=on_trial)
    return JobResult(name, done, pareto_trials(tuner.optuna))
