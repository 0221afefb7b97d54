"""Model-seeded search (opt-in): a study with `seeds = "model"` measures the predicted front's picks first."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune.errors import AutotuneError
from autotune.knobs import ServingConfig
from autotune.models.resolve import ModelRef
from autotune.plan import make_plan
from autotune.seeds import heuristic_seeds
from autotune.servers.backends import local_backend
from autotune.space import Host, build_space
from autotune.spec import Study, parse_study
from autotune.trial import MeasureSettings, TrialResult
from autotune.tuner import Tuner
from tests.test_perfmodel import synthetic_profile


def _tuner(study: Study, planned: list[ServingConfig] | None, measured: list[ServingConfig]) -> Tuner:
    def measure(config: ServingConfig, _say: object, _pid: object) -> TrialResult:
        measured.append(config)
        metrics = {"throughput_rps": 10.0, "latency_p99_ms": 5.0, "error_rate": 0.0, "stable": True}
        return TrialResult("tiny", "replay", "rest", config, [], metrics)

    model = ModelRef("tiny", Path("."), 1, None)  # type: ignore[arg-type]
    space = build_space({}, Host(cpus=2, gpus=0))
    settings = MeasureSettings(concurrency=8)
    return Tuner(study, model, local_backend(), space, settings, None, "s", measure=measure, cpus=2, planned=planned)


def test_a_study_chooses_where_the_first_configs_come_from_and_a_typo_is_one_line():
    assert parse_study({"model": "tiny"}, "t").seeds == "guide"
    assert parse_study({"model": "tiny", "seeds": "model"}, "t").seeds == "model"
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
def test_a_model_seeded_job_measures_the_planned_front_right_after_the_defaults(tmp_path, tiny_model):
    """Live: a job whose study says seeds = "model" plans from this host's stored profile and measures its picks."""
    import os

    from autotune.fingerprint import fingerprint, host_info
    from autotune.models.content import content_hash
    from autotune.space import Host as SpaceHost
    from autotune.store import Store
    from autotune.store.profiles import Profiles
    from tests.conftest import SHORT, autotune

    url = f"sqlite:///{tmp_path / 'seeded.db'}"
    host = fingerprint(host_info())
    # A synthetic profile stored as `autotune profile` stores one: which configs come first is under test here,
    # not the profile's figures (the real profile path is tests/test_predict_cli.py's).
    profile = synthetic_profile(host_fingerprint=host)
    Profiles(url).put(content_hash(tiny_model.version_path), host, "tiny", profile.to_json())
    path = tmp_path / "seeded.toml"
    path.write_text(
        'model = "tiny"\nbackend = "local"\nseeds = "model"\n[slo]\nlatency_p99_ms = 200\n'
        '[budget]\ntrials = 3\nconfirm_repeats = 0\n[load]\nprotocol = "rest"\nconcurrency = 8\n'
    )
    env = {**os.environ, "AUTOTUNE_DB_URL": url}
    proc = autotune("start", "--study", str(path), "--foreground", "--json", *SHORT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "from the model's predicted front" in proc.stderr
    study = parse_study(
        {
            "model": "tiny",
            "seeds": "model",
            "slo": {"latency_p99_ms": 200},
            "load": {"protocol": "rest", "concurrency": 8},
        },
        "t",
    )
    space = build_space({}, SpaceHost.detect())
    expected = [p.config.to_dict() for p in make_plan(profile, study, space, "rest").seeds]
    job = Store(url).jobs_of("tiny")[-1]
    configs = [t.config for t in sorted(job.trials, key=lambda t: t.number)]
    assert configs[0] == ServingConfig().to_dict()
    planned = [c for c in expected if c != ServingConfig().to_dict()]
    assert configs[1:3] == planned[:2]
