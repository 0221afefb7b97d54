"""Jobs and trials written straight into a store, for tests of what reads them back (no server runs)."""

from __future__ import annotations

import itertools
from dataclasses import asdict
from typing import Any

from autotune.spec import Study
from autotune.states import JobState, TrialState
from autotune.store import Store
from autotune.store.schema import JobRow, ModelRow

OBJECTIVES = {"throughput_rps": "maximize", "latency_p99_ms": "minimize"}
_names = itertools.count()


def stored_study(**fields: Any) -> dict[str, Any]:
    """A study as a job stores it (every field, as run): the defaults, with FIELDS changed."""
    return asdict(Study(source="test", model="tiny", objectives=dict(OBJECTIVES), **fields))


def add_host(store: Store, fingerprint: str) -> int:
    return store.host({"cpu_model": fingerprint}, fingerprint)


def add_model(store: Store, name: str = "tiny") -> int:
    """A model row with no files behind it: for what only reads jobs back (status, pareto)."""
    with store._tx() as s:
        row = ModelRow(name=name, path=f"/models/{name}", version=1, content_hash="0" * 64, signature={})
        s.add(row)
        s.flush()
        return row.id


def add_job(
    store: Store,
    model_id: int,
    fingerprint: str,
    state: JobState = JobState.queued,
    settings: dict[str, Any] | None = None,
) -> int:
    """A job of the model MODEL_ID pinned to the host FINGERPRINT, measured with SETTINGS."""
    return store.create_job(
        model_id=model_id,
        host_id=add_host(store, fingerprint),
        study_name=f"test/{fingerprint}/{next(_names)}",
        study=stored_study(),
        settings=settings or {},
        backend="local",
        trials_total=3,
        minutes=1.0,
        state=state,
    )


def add_trial(
    store: Store,
    job_id: int,
    number: int,
    state: TrialState = TrialState.complete,
    rps: float = 10.0,
    p99: float = 5.0,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> None:
    """A finished trial; a complete one is feasible with objectives (RPS, P99); METRICS adds figures."""
    store.begin_trial(job_id, number, config or {"enable_batching": False})
    complete = state == TrialState.complete
    store.finish_trial(
        job_id,
        number,
        state=state,
        metrics={"throughput_rps": rps, "latency_p99_ms": p99, "stable": True, **(metrics or {})},
        objective_values=[rps, p99] if complete else None,
        feasible=complete,
    )


def set_job(store: Store, job_id: int, **values: Any) -> None:
    """Change a job row's columns directly (what another host's daemon would have written)."""
    with store._tx() as s:
        job = s.get(JobRow, job_id)
        for key, value in values.items():
            setattr(job, key, value)
