"""Planning from the performance model: the space's grid simulated, the predicted front, and a job's first configs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from autotune.errors import AutotuneError
from autotune.knobs import ServingConfig
from autotune.pareto import dominance_counts, dominates, pareto_front
from autotune.perfmodel.profile import Profile
from autotune.perfmodel.simulate import equivalence_key
from autotune.plan import (
    Planned,
    changes_from_defaults,
    distinct_seeds,
    guarded_space,
    make_plan,
    plan_load,
    predicted_metrics,
    screen_requests,
    simulated,
    spread_over_front,
)
from autotune.space import Dimension, Host, build_space, grid_configs, grid_of, grid_size
from autotune.spec import KnobSpec, Study
from tests.conftest import autotune
from tests.test_perfmodel import synthetic_profile

STUDY = Study(source="test", model="tiny", slo_p99_ms=200.0, concurrency=8)


def small_space() -> dict[str, Dimension]:
    narrowing = {
        "max_batch_size": KnobSpec(choices=(1, 4, 16)),
        "batch_timeout_micros": KnobSpec(choices=(1, 5000)),
        "num_batch_threads": KnobSpec(choices=(1, 2)),
        "max_enqueued_batches": KnobSpec(value=100),
    }
    return build_space(narrowing, Host(2, 0))


def test_the_grid_holds_every_config_once_and_batching_knobs_only_with_batching_on():
    space = grid_of(small_space())
    configs = grid_configs(space)
    assert len(configs) == grid_size(space) == 9 + 3 * 2 * 2 * 9
    assert len({json.dumps(c.to_dict(), sort_keys=True) for c in configs}) == len(configs)
    assert all(c.max_batch_size == ServingConfig().max_batch_size for c in configs if not c.enable_batching)
    assert ServingConfig() in configs  # TF Serving's defaults are a grid point


def test_the_plan_front_is_feasible_and_non_dominated_and_the_seeds_start_from_it():
    plan = make_plan(synthetic_profile(), STUDY, small_space(), "rest")
    objectives = list(STUDY.objectives)
    directions = list(STUDY.objectives.values())
    assert plan.simulated == plan.grid and plan.front
    assert all(p.feasible and p.metrics["latency_p99_ms"] <= 200.0 for p in plan.front)
    values = [[p.metrics[m] for m in objectives] for p in plan.front]
    assert not any(dominates(a, b, directions) for a in values for b in values)
    assert 1 <= len(plan.seeds) <= 4 and plan.seeds[0] in plan.front and all(s.feasible for s in plan.seeds)
    best = max(plan.front, key=lambda p: p.metrics["throughput_rps"])
    fastest = min(plan.front, key=lambda p: p.metrics["latency_p99_ms"])
    assert best in plan.seeds and fastest in plan.seeds  # each objective's best is measured first


def test_a_large_grid_is_screened_its_best_simulated_in_full_and_the_defaults_always_planned():
    space = build_space({}, Host(2, 0))
    plan = make_plan(synthetic_profile(), STUDY, space, "rest", max_configs=20, requests=200, max_screen=150)
    assert plan.grid > 2000 and plan.screened == 150  # past MAX_SCREEN, a sample is screened
    assert plan.simulated in (20, 21)  # the screen's best 20, and TF Serving's defaults unless among them
    assert "150 configs screened (a sample of" in plan.coverage and plan.to_json()["screened"] == 150


def test_the_screen_finds_a_one_config_optimum_that_a_sample_of_the_grid_would_miss():
    space = build_space({}, Host(2, 0))
    configs = grid_configs(grid_of(space))
    needle = configs[len(configs) // 3]
    position = {config: i for i, config in enumerate(configs)}
    asked: list[tuple[ServingConfig, int]] = []

    def predict(config: ServingConfig, requests: int) -> dict:
        asked.append((config, requests))
        rps = 500.0 if config == needle else 50.0 + position[config] % 40
        return {"throughput_rps": rps, "latency_p99_ms": 100.0, "error_rate": 0.0, "stable": True}

    plan = make_plan(synthetic_profile(), STUDY, space, "rest", max_configs=20, requests=300, predict=predict)
    assert plan.screened == len(configs) and plan.seeds[0].config == needle
    full = [config for config, n in asked if n == 300]
    assert len(full) == plan.simulated <= 21 and needle in full  # only the screen's best get every answer
    assert {n for _, n in asked} == {300, screen_requests(plan_load(STUDY, 2.0))}


def test_of_configs_predicted_alike_the_plan_keeps_the_one_fewest_knobs_away_from_tf_servings_defaults():
    space = build_space({}, Host(2, 0))
    configs = grid_configs(grid_of(space))

    def predict(config: ServingConfig, requests: int) -> dict:
        best = config.enable_batching and config.max_batch_size == 4  # many configs, one prediction
        return {"throughput_rps": 90.0 if best else 50.0, "latency_p99_ms": 100.0, "error_rate": 0.0, "stable": True}

    plan = make_plan(synthetic_profile(), STUDY, space, "rest", max_configs=20, requests=300, predict=predict)
    tied = [c for c in configs if c.enable_batching and c.max_batch_size == 4]
    assert len(tied) > 10 and plan.seeds[0].config in tied
    assert changes_from_defaults(plan.seeds[0].config) == min(changes_from_defaults(c) for c in tied)


def test_a_plan_simulates_once_what_the_simulation_reads_alike_and_answers_as_a_simulation_of_each_would():
    configs = grid_configs(grid_of(small_space()))
    load = plan_load(STUDY, 2.0)
    predict = simulated(synthetic_profile(), load, "rest", 2.0, seed=0)
    for config in configs:
        assert predict(config, 200) == predicted_metrics(synthetic_profile(), config, load, "rest", 2.0, 200, 0)
    assert len({equivalence_key(c, load, 2.0) for c in configs}) < len(configs)  # some were read alike


def test_dominance_counts_are_zero_on_the_front_and_count_every_better_point():
    points = [[10.0, 100.0], [8.0, 50.0], [5.0, 200.0], [10.0, 100.0], [4.0, 300.0]]
    counts = dominance_counts(points, ["maximize", "minimize"])
    assert counts == [0, 0, 3, 0, 4]  # a duplicate dominates as its twin does
    assert [i for i, c in enumerate(counts) if c == 0] == pareto_front(points, ["maximize", "minimize"])


def test_seeds_spread_over_the_front_take_each_objectives_best_first():
    front = [Planned(ServingConfig(), {"throughput_rps": float(i), "latency_p99_ms": float(i)}, True) for i in range(9)]
    picked = spread_over_front(front, dict(STUDY.objectives), 3)
    assert [p.metrics["throughput_rps"] for p in picked] == [8.0, 0.0, 4.0]


def test_seeds_the_model_predicts_alike_are_one_seed_and_the_next_front_fills_the_rest():
    def planned(rps: float, p99: float, threads: int) -> Planned:
        return Planned(ServingConfig(intra_op_threads=threads), {"throughput_rps": rps, "latency_p99_ms": p99}, True)

    tied = [planned(25.0, 160.0, t) for t in range(3)]  # one prediction, three configs
    near = planned(24.5, 165.0, 5)  # behind the front, but within 5% of it in both objectives
    behind = [planned(23.0, 180.0, 6), planned(20.0, 240.0, 7), planned(10.0, 400.0, 8)]
    seeds = distinct_seeds([*tied, near, *behind], dict(STUDY.objectives), 3)
    assert [s.config.intra_op_threads for s in seeds] == [0, 6, 7]  # the front once, then the best of the rest
    assert distinct_seeds(tied, dict(STUDY.objectives), 4) == tied[:1]  # no filler the model cannot tell apart


def test_an_objective_the_model_does_not_predict_is_a_one_line_error():
    study = dataclasses.replace(STUDY, objectives={"throughput_rps": "maximize", "rss_mb": "minimize"})
    with pytest.raises(AutotuneError, match="does not predict rss_mb"):
        make_plan(synthetic_profile(), study, small_space(), "rest")


def test_autotune_plan_prints_the_predicted_front_from_a_profile_file(tmp_path: Path):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(synthetic_profile().to_json()))
    res = autotune("plan", "--model", "tiny", "--profile", str(path), "--any-host", "--concurrency", "8", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["predicted"] is True and doc["load"] == {"concurrency": 8} and doc["front"]
    assert doc["seeds"][0] in doc["front"] and all(s["feasible"] for s in doc["seeds"])
    missing = autotune("plan", "--model", "tiny", "--profile", str(tmp_path / "none.json"), "--any-host")
    assert missing.returncode != 0 and missing.stderr.count("\n") == 1 and "cannot read" in missing.stderr


def test_open_loop_plans_judge_overload_as_a_measurement_does():
    study = dataclasses.replace(STUDY, concurrency=None, rate=3000.0, slo_p99_ms=None)
    unbatched = build_space({"enable_batching": KnobSpec(value=False)}, Host(2, 0))
    plan = make_plan(synthetic_profile(), study, unbatched, "rest", requests=200)
    assert plan.simulated == 9 and plan.feasible == 0 and not plan.front  # none serves 3,000/s: all fall short


def with_variant_points(profile: Profile, accuracy: dict[str, dict]) -> Profile:
    """PROFILE plus a tflite_fp16 and a tflite_int8 curve (twice as fast as the SavedModel), with ACCURACY figures."""
    fast = [
        dataclasses.replace(p, variant=v, wall_ms=p.wall_ms / 2, cpu_ms=p.cpu_ms / 2)
        for v in ("tflite_fp16", "tflite_int8")
        for p in profile.points
        if p.threads == 1
    ]
    return dataclasses.replace(profile, points=profile.points + tuple(fast), accuracy=accuracy)


@pytest.mark.slow
def test_the_plan_leaves_out_variants_it_cannot_plan_and_says_why():
    guarded = dataclasses.replace(STUDY, min_top1_agreement=0.99)
    space = build_space(
        {"model_variant": KnobSpec(choices=("savedmodel", "tflite_fp16", "tflite_int8", "xla"))}, Host(2, 0)
    )
    figures = {"samples": 128, "max_abs_error": 0.01, "max_rel_error": 0.1}
    profile = with_variant_points(
        synthetic_profile(),
        {"tflite_fp16": {**figures, "top1_agreement": 1.0}, "tflite_int8": {**figures, "top1_agreement": 0.5}},
    )
    plan = make_plan(profile, guarded, space, "rest", max_configs=60, requests=200)
    assert plan.left_out == {
        "tflite_int8": "top-1 agreement 0.500 < 0.99",
        "xla": "not profiled (autotune profile --variants)",
    }
    assert {p.config.model_variant for p in plan.front} == {"tflite_fp16"}  # twice as fast, and it passes the guard
    loose = make_plan(
        profile, dataclasses.replace(STUDY, min_top1_agreement=None), space, "rest", max_configs=60, requests=200
    )
    assert set(loose.left_out) == {"xla"}


def test_a_model_seeded_job_searches_no_variant_whose_profiled_answers_fail_the_guard():
    guarded = dataclasses.replace(STUDY, min_top1_agreement=0.99)
    space = build_space(
        {"model_variant": KnobSpec(choices=("savedmodel", "tflite_fp16", "tflite_int8", "xla"))}, Host(2, 0)
    )
    figures = {"samples": 128, "max_abs_error": 0.01, "max_rel_error": 0.1}
    passing, failing = {**figures, "top1_agreement": 1.0}, {**figures, "top1_agreement": 0.5}
    profile = with_variant_points(synthetic_profile(), {"tflite_fp16": passing, "tflite_int8": failing})
    narrowed, dropped = guarded_space(profile, guarded, space, None)
    # xla was never profiled: only a trial can tell, so it stays
    assert narrowed["model_variant"].choices == ("savedmodel", "tflite_fp16", "xla")
    assert dropped == {"tflite_int8": "top-1 agreement 0.500 < 0.99"}
    assert guarded_space(profile, guarded, space, "requests.jsonl") == (space, {})  # a trial checks other inputs
    both_fail = with_variant_points(synthetic_profile(), {"tflite_fp16": failing, "tflite_int8": failing})
    only = build_space({"model_variant": KnobSpec(choices=("savedmodel", "tflite_fp16", "tflite_int8"))}, Host(2, 0))
    assert guarded_space(both_fail, guarded, only, None)[0]["model_variant"].fixed == "savedmodel"
