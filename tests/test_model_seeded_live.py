"""The live evidence's rule for model-seeded jobs (benchmarks/model_seeded_live.py), on records made up here."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import model_seeded_live as live  # noqa: E402
import pytest  # noqa: E402


def job(arm: str, seed: int, pick_trial: int | None, gain: float | None, variant: str = "tflite_fp16") -> dict:
    """A job's record: four measured trials (the model's predictions only in model-seeded jobs) and its pick."""
    trials = [
        {
            "trial": n,
            "state": "complete",
            "config": {"model_variant": variant} if n == pick_trial else {},
            "measured": {"throughput_rps": 100.0, "latency_p99_ms": 50.0},
            "predicted": {"throughput_rps": 120.0, "latency_p99_ms": 40.0} if arm == "model" else None,
            "finished_s": 30.0 * (n + 1),
        }
        for n in range(4)
    ]
    pick = (
        None
        if pick_trial is None
        else {"trial": pick_trial, "config": trials[pick_trial]["config"], "gain": gain, "verdict": "better"}
    )
    return {"arm": arm, "seed": seed, "wall_s": 300.0, "trials": trials, "pick": pick}


def test_trials_to_the_best_count_the_defaults_as_the_first_and_a_miss_as_the_budget_plus_one():
    doc = {
        "trials": 8,
        "jobs": [
            job("model", 1, 1, 2.0),  # the best: its pick was the second trial
            job("guide", 1, 3, 1.85),  # within 10% of the best
            job("model", 2, 0, 1.0, variant="savedmodel"),  # the defaults picked: gain 1
            job("guide", 2, 2, 1.79),  # just beyond 10%
        ],
    }
    f = live.figures(doc)
    assert f["best_gain"] == 2.0
    rows = {(r["arm"], r["seed"]): r for r in f["jobs"]}
    assert rows["model", 1]["trials_to_best"] == 2 and rows["model", 1]["seconds_to_best"] == 60.0
    assert rows["guide", 1]["trials_to_best"] == 4 and rows["guide", 1]["reached"]
    assert rows["model", 2]["trials_to_best"] == 9 and not rows["model", 2]["reached"]
    assert rows["guide", 2]["trials_to_best"] == 9 and rows["guide", 2]["seconds_to_best"] is None
    assert f["arms"]["model"]["median_trials"] == 5.5 and f["arms"]["model"]["range_trials"] == [2, 9]
    assert f["ratio_of_medians"] == 5.5 / 6.5
    assert not f["target_trials_met"] and not f["target_ratio_met"]


def test_the_model_error_uses_only_trials_the_model_predicted_before_they_ran():
    f = live.figures({"trials": 4, "jobs": [job("model", 1, 1, 2.0), job("guide", 1, 1, 2.0)]})
    err = f["model_error"]
    assert err["all"]["throughput_rps"]["n"] == 4
    assert err["all"]["throughput_rps"]["median_abs_error"] == pytest.approx(0.2)
    assert err["all"]["latency_p99_ms"]["median_abs_error"] == pytest.approx(0.2)
    assert err["tflite_fp16"]["throughput_rps"]["n"] == 1 and err["savedmodel"]["throughput_rps"]["n"] == 3


def test_arms_alternate_which_runs_first_from_seed_to_seed():
    assert live.arm_order(1) == ("model", "guide") and live.arm_order(2) == ("guide", "model")


def test_a_run_stopped_early_is_scored_on_whole_seeds_only():
    ran = [job("guide", 1, 1, 2.0), job("model", 1, 1, 2.0), job("model", 2, 1, 3.0)]  # seed 2's guide never ran
    kept = live.whole_seeds(ran)
    assert [(j["arm"], j["seed"]) for j in kept] == [("guide", 1), ("model", 1)]
    assert live.figures({"trials": 4, "jobs": kept})["best_gain"] == 2.0  # seed 2's x3.0 cannot set the best


def _block(rps_by_config: dict[str, list[float]]) -> dict:
    """A head-to-head block: each config (by its JSON, "{}" for the defaults) with its runs' throughput."""
    import json

    return {
        "sides": [
            {"config": json.loads(key), "runs": [{"ok": True, "metrics": {"throughput_rps": r}} for r in rps]}
            for key, rps in rps_by_config.items()
        ]
    }


def test_a_head_to_head_judges_every_pick_against_the_same_defaults_and_keeps_the_earlier_rule_beside_it():
    fp16, int8 = '{"model_variant": "tflite_fp16"}', '{"model_variant": "tflite_int8"}'
    doc = {
        "trials": 8,
        "jobs": [
            job("model", 1, 1, 2.0),  # fp16: its own confirmation says x2.0
            job("guide", 1, 2, 2.6, variant="tflite_int8"),  # int8: x2.6 against slow defaults of its own
        ],
        # In one block, fp16 runs at 200 rps, int8 at 150 and the defaults at 100.
        "head_to_head": _block({"{}": [90.0, 100.0, 110.0], fp16: [200.0, 190.0, 210.0], int8: [150.0, 150.0, 1.0]}),
    }
    f = live.figures(doc)
    assert f["gains_from"] == "head_to_head" and f["best_gain"] == 2.0
    rows = {r["arm"]: r for r in f["jobs"]}
    assert rows["model"]["reached"] and rows["model"]["gain"] == 2.0
    assert not rows["guide"]["reached"] and rows["guide"]["gain"] == 1.5
    earlier = f["by_confirmation"]
    assert earlier["best_gain"] == 2.6 and [r["reached"] for r in earlier["jobs"]] == [False, True]
    assert "gains_from" not in live.figures({"trials": 8, "jobs": doc["jobs"]}), "a run without a block: its own rule"


def test_the_head_to_head_runs_the_defaults_and_each_distinct_pick_once_however_their_configs_were_stored():
    from autotune.knobs import ServingConfig

    jobs = [job("model", 1, 1, 2.0), job("guide", 1, 1, 2.0), job("model", 2, 0, 1.0, variant="savedmodel")]
    jobs[1]["pick"]["config"] = {**ServingConfig().to_dict(), "model_variant": "tflite_fp16"}  # fp16 spelled out
    configs = live.h2h_configs(jobs)
    assert [c.get("model_variant", "savedmodel") for c in configs] == ["savedmodel", "tflite_fp16"]


def test_a_pick_with_under_two_good_runs_in_the_head_to_head_has_no_gain_and_misses():
    fp16 = '{"model_variant": "tflite_fp16"}'
    block = _block({"{}": [100.0, 100.0], fp16: [300.0]})
    doc = {"trials": 8, "jobs": [job("model", 1, 1, 2.0), job("guide", 1, 0, 1.0, variant="savedmodel")]}
    f = live.figures({**doc, "head_to_head": block})
    rows = {r["arm"]: r for r in f["jobs"]}
    assert rows["model"]["gain"] is None and not rows["model"]["reached"] and rows["guide"]["reached"]


def test_live_trials_to_the_pick_skip_numbers_that_never_ran_live():
    skipped = job("model", 1, 3, 2.0)
    skipped["trials"] = [t for t in skipped["trials"] if t["trial"] != 2]  # trial 2: a pick dropped after drift
    f = live.figures({"trials": 8, "jobs": [skipped]})
    assert f["jobs"][0]["trials_to_best"] == 3
