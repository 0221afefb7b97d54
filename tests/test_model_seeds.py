"""Model-seeded search (opt-in): a study with `seeds = "model"` measures the predicted front's picks first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

from autotune.errors import AutotuneError
from autotune.knobs import ServingConfig
from autotune.measure import MeasureSettings, TrialResult
from autotune.model_check import ModelCheck, relative_error
from autotune.models.resolve import ModelRef
from autotune.plan import make_plan
from autotune.seeds import allowance_seeds, heuristic_seeds
from autotune.servers.backends import local_backend
from autotune.space import Host, build_space, grid_configs, grid_of
from autotune.spec import Study, parse_study
from autotune.states import FailureReason
from autotune.tuner import PLANNED_ATTR, TrialHooks, Tuner
from tests.test_perfmodel import synthetic_profile


def _tuner(
    study: Study,
    planned: list[ServingConfig] | None,
    measured: list[ServingConfig],
    predict: Callable[[ServingConfig], dict[str, float]] | None = None,
    storage: optuna.storages.BaseStorage | None = None,
) -> Tuner:
    """A tuner whose trials replay a fixed measurement (10 rps, 5 ms): which configs it measures is under test."""

    def measure(config: ServingConfig, _say: object, _pid: object) -> TrialResult:
        measured.append(config)
        metrics = {"throughput_rps": 10.0, "latency_p99_ms": 5.0, "error_rate": 0.0, "stable": True}
        return TrialResult("tiny", "replay", "rest", config, [], metrics)

    model = ModelRef("tiny", Path("."), 1, None)  # type: ignore[arg-type]
    space = build_space({}, Host(cpus=2, gpus=0))
    settings = MeasureSettings(concurrency=8)
    return Tuner(
        study,
        model,
        local_backend(),
        space,
        settings,
        storage,
        "s",
        measure=measure,
        cpus=2,
        planned=planned,
        predict=predict,
    )


def _predicting(rps: float) -> Callable[[ServingConfig], dict[str, float]]:
    return lambda _config: {"throughput_rps": rps, "latency_p99_ms": 5.0, "cpu_cores": 1.0}


def _many_planned(n: int) -> list[ServingConfig]:
    space = build_space({}, Host(cpus=2, gpus=0))
    return [c for c in grid_configs(grid_of(space)) if c != ServingConfig()][:n]


def test_a_model_that_misses_by_more_than_a_quarter_over_five_trials_loses_its_remaining_picks():
    study = Study(source="t", model="tiny", slo_p99_ms=200.0, concurrency=8, seeds="model", seed=1)
    planned, measured, said = _many_planned(8), [], []
    tuner = _tuner(study, planned, measured, predict=_predicting(20.0))  # twice what is measured
    done = tuner.run(trials=9, minutes=5, hooks=TrialHooks(said=said.append))
    assert measured[:5] == [ServingConfig(), *planned[:4]]
    measured_picks = [t for t in tuner.optuna.trials if t.user_attrs.get(PLANNED_ATTR) and t.state.name == "COMPLETE"]
    assert len(measured_picks) == 4, "no pick of the model measured after it drifted"
    assert len(done) == 9 and all(t.predicted == _predicting(20.0)(t.config) for t in done)
    assert said == [
        "the model's throughput predictions miss by 100% (median of 5 trials, limit 25%): "
        "model-free search for the rest of the job"
    ]
    skipped = [t for t in tuner.optuna.trials if t.user_attrs.get("failure_reason") == FailureReason.skipped]
    assert len(skipped) == 4 and all(t.user_attrs.get(PLANNED_ATTR) for t in skipped)


def test_a_model_within_the_limit_keeps_its_picks_and_a_resumed_job_remembers_a_drift():
    study = Study(source="t", model="tiny", slo_p99_ms=200.0, concurrency=8, seeds="model", seed=1)
    planned, measured, said = _many_planned(6), [], []
    _tuner(study, planned, measured, predict=_predicting(11.0)).run(7, 5, TrialHooks(said=said.append))
    assert measured == [ServingConfig(), *planned] and said == []

    storage = optuna.storages.InMemoryStorage()
    _tuner(study, _many_planned(8), [], predict=_predicting(30.0), storage=storage).run(6, 5)
    resumed = _tuner(study, None, [], predict=_predicting(30.0), storage=storage)
    assert resumed.drifted and len(resumed.check.errors) == 6


def test_after_the_models_picks_a_job_measures_the_guides_seeds_the_model_did_not_pick():
    # The two miss in opposite places: the guide's seeds find an optimum the model's noise hides (RESULTS, "The race
    # again, on the revised simulator"); the model's picks keep their places in front.
    study = Study(source="t", model="tiny", slo_p99_ms=200.0, concurrency=8, seeds="model", seed=1)
    space = build_space({}, Host(cpus=2, gpus=0))
    guide = [*allowance_seeds(space), *heuristic_seeds(space, 2, 8)]
    planned, measured = [guide[0], *_many_planned(2)], []
    _tuner(study, planned, measured, predict=_predicting(10.0)).run(trials=8, minutes=5)
    rest = [c for c in guide if c not in planned and c != ServingConfig()]
    assert rest, "the guide seeds something the model did not pick"
    assert measured[: 1 + len(planned) + len(rest)] == [ServingConfig(), *planned, *rest]


def test_the_drift_rule_needs_five_stable_trials_and_a_median_miss_over_a_quarter():
    check = ModelCheck()
    for _ in range(4):
        check.add({"throughput_rps": 20.0}, {"throughput_rps": 10.0, "stable": True})
    check.add({"throughput_rps": 20.0}, {"throughput_rps": 10.0, "stable": False})  # no truth to judge by
    check.add(None, {"throughput_rps": 10.0})
    assert check.drift() is None and len(check.errors) == 4
    check.add({"throughput_rps": 12.0}, {"throughput_rps": 10.0})
    assert check.drift() is not None  # median of 1.0, 1.0, 1.0, 1.0, 0.2
    within = ModelCheck([0.1, 0.2, 0.25, 0.3, 0.9])
    assert within.drift() is None and relative_error(12.5, 10.0) == 0.25 and relative_error(5.0, 0.0) is None


def test_a_study_chooses_where_the_first_configs_come_from_and_a_typo_is_one_line():
    assert parse_study({"model": "tiny"}, "t").seeds == "model"
    assert parse_study({"model": "tiny", "seeds": "guide"}, "t").seeds == "guide"
    with pytest.raises(AutotuneError, match="seeds"):
        parse_study({"model": "tiny", "seeds": "oracle"}, "t")


def test_planned_configs_replace_the_guides_after_the_defaults():
    study = Study(source="t", model="tiny", slo_p99_ms=200.0, concurrency=8, seeds="model")
    space = build_space({}, Host(cpus=2, gpus=0))
    plan = make_plan(synthetic_profile(), study, space, "rest", max_configs=40, requests=200)
    planned = [p.config for p in plan.seeds]
    assert planned
    measured: list[ServingConfig] = []
    _tuner(study, planned, measured).run(trials=1 + len(planned), minutes=5)
    assert measured == [ServingConfig(), *[c for c in planned if c != ServingConfig()]]


def test_without_a_plan_the_batching_guides_seeds_come_first():
    study = Study(source="t", model="tiny", concurrency=8)
    measured: list[ServingConfig] = []
    tuner = _tuner(study, None, measured)
    guide = heuristic_seeds(tuner.space, 2, 8)
    tuner.run(trials=3, minutes=5)
    assert measured[0] == ServingConfig() and measured[1:] == [c for c in guide if c != ServingConfig()][:2]


@pytest.mark.slow
def test_a_job_after_another_measures_the_defaults_then_the_previous_front_then_its_seeds():
    # The warm start, on fixed results: the live test of `start` cannot choose what its first job's front holds.
    study = Study(source="t", model="tiny", concurrency=8)
    space = build_space({}, Host(cpus=2, gpus=0))
    previous = [c for c in grid_configs(grid_of(space)) if c != ServingConfig()][:2]
    entries = [{"config": c.to_dict()} for c in [ServingConfig(), *previous]] + [{"config": {"no_such": 1}}]
    measured: list[ServingConfig] = []
    _tuner(study, None, measured).run(trials=4, minutes=5, previous=entries)
    seeds = [c for c in heuristic_seeds(space, 2, 8) if c not in (ServingConfig(), *previous)]
    assert measured == [ServingConfig(), *previous, seeds[0]]


@pytest.mark.slow
def test_a_model_seeded_job_with_no_profile_measures_one_first_keeps_it_and_seeds_from_it(tmp_path, tiny_model):
    """Live: no profile of the model on this host, so the job profiles it (its protocol only), stores it for the
    jobs after it, and measures the plan of that profile right after the defaults."""
    import json
    import os

    from autotune.fingerprint import fingerprint, host_info
    from autotune.models.content import content_hash
    from autotune.perfmodel.profile import Profile
    from autotune.space import Host as SpaceHost
    from autotune.store import Store
    from autotune.store.profiles import Profiles
    from tests.conftest import SHORT, autotune

    url = f"sqlite:///{tmp_path / 'seeded.db'}"
    path = tmp_path / "seeded.toml"
    path.write_text(
        'model = "tiny"\nbackend = "local"\nseeds = "model"\n[slo]\nlatency_p99_ms = 200\n'
        # The least profile: its shape and use are what is checked, not its precision.
        '[budget]\ntrials = 2\nconfirm_repeats = 0\nprofile_s = 1\n[load]\nprotocol = "grpc"\nconcurrency = 4\n'
    )
    env = {**os.environ, "AUTOTUNE_DB_URL": url}
    proc = autotune("start", "--study", str(path), "--foreground", "--json", *SHORT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "profiled tiny on this host" in proc.stderr and "from the model's predicted front" in proc.stderr
    doc = Profiles(url).get(content_hash(tiny_model.version_path), fingerprint(host_info()))
    assert doc is not None
    profile = Profile.from_json(doc)
    assert [t.protocol for t in profile.transport] == ["grpc"] and profile.points
    study = parse_study(
        {
            "model": "tiny",
            "seeds": "model",
            "slo": {"latency_p99_ms": 200},
            "load": {"protocol": "grpc", "concurrency": 4},
        },
        "t",
    )
    planned = make_plan(profile, study, build_space({}, SpaceHost.detect()), "grpc").seeds
    first = next(p.config.to_dict() for p in planned if p.config != ServingConfig())
    job = Store(url).jobs_of("tiny")[-1]
    configs = [t.config for t in sorted(job.trials, key=lambda t: t.number)]
    assert configs == [ServingConfig().to_dict(), first]
    # Each trial keeps the model's figures beside its measurement, and the report draws them against each other.
    assert all(t.predicted_throughput_rps and t.predicted_latency_p99_ms for t in job.trials)
    report = tmp_path / "report"
    assert autotune("report", "--model", "tiny", "--out", str(report), env=env).returncode == 0
    summary = json.loads((report / "summary.json").read_text())
    # Which trials settle in 0.3 s windows is the machine's to say; the calibration holds every one that did.
    stable = [t for t in job.trials if t.state == "complete" and t.metrics.get("stable") is not False]
    calibration = summary["calibration"] or {"trials": 0}
    assert calibration["trials"] == len(stable) and (report / "calibration.png").exists() == bool(stable)
    front = summary["predicted_front"]
    assert front and all(p["predicted"]["throughput_rps"] > 0 and p["feasible"] for p in front)
    assert "The predicted front and the confirmed one" in (report / "report.html").read_text()
