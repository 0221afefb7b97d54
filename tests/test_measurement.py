"""The measurement protocol on live servers: send-time windows, model warm-up, stability, open-loop
overload, `compare`, and a confirmed front."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from autotune.job import run_job
from autotune.knobs import is_default_config
from autotune.measure import MeasureSettings, TrialResult
from autotune.spec import study_for_model
from autotune.store import Store
from tests.conftest import SHORT, autotune

# Longer windows than conftest's SHORT, under the default stability rule: the model warm-up reads it too.
STEADY = ["--window-s", "0.5", "--warmup-s", "0.2", "--max-windows", "6"]


@pytest.mark.slow
def test_a_server_slow_for_its_first_seconds_does_not_leak_into_the_windows(tiny_model):
    # For its first 4 s the server answers one request at a time, 400 ms at first and less and less:
    # a cold model. Tiny's warm p99 is a few ms; any cold request in a window would show as >= 40 ms.
    cold = {"AUTOTUNE_TEST_COLD_START": "4:0.4"}
    proc = autotune("bench", "--model", "tiny", "--concurrency", "4", "--json", "--windows", *STEADY, env=cold)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["model_warmup_s"] >= 2.0  # the warm-up saw the cold phase and waited it out
    for level in result["levels"]:
        for w in level["windows"]:
            assert w["latency_ms"]["max"] < 40, (level["concurrency"], w["latency_ms"])


@pytest.mark.slow
def test_open_loop_overload_counts_dropped_arrivals_and_is_infeasible(tiny_model):
    proc = autotune("bench", "--model", "tiny", "--rate", "20000", "--json", *SHORT)
    result = json.loads(proc.stdout)
    assert result["offered_rps"] > 5000  # the offer really was made (Poisson arrivals at 20000/s)
    assert result["achieved_rps"] < 0.95 * result["offered_rps"]
    assert result["dropped"] > 0 and result["error_rate"] > 0  # arrivals never sent count as errors
    assert result["slo_met"] is False
    assert proc.returncode == 3  # errors over the limit: the bench says it failed
    assert "errors_over_limit" in proc.stderr


def _tiny_study(**changes):
    return replace(study_for_model("tiny"), slo_p99_ms=None, max_error_rate=0.01, concurrency=2, **changes)


@pytest.mark.slow
def test_an_unstable_level_is_measured_again_then_stored_unstable_and_never_exported(tiny_profile, tmp_path):
    # Zero tolerance: windows never agree exactly, so every level is unstable.
    # The model warm-up waits for two windows that agree too: cap it, or it waits out its full 30 s.
    settings = MeasureSettings(
        concurrency=2,
        tolerance=0.0,
        window_s=0.3,
        warmup_s=0.1,
        max_windows=3,
        max_error_rate=0.01,
        model_warmup_max_s=1.0,
    )
    result = run_job(_tiny_study(confirm_repeats=0), 1, 5, settings)
    (trial,) = result.trials
    assert trial.result.metrics["stable"] is False and trial.result.metrics["remeasured"] is True
    assert all(level.remeasured for level in trial.result.levels)
    assert not trial.feasible  # told to Optuna as a violated constraint
    row = Store().jobs_of("tiny")[-1].trials[0]
    assert row.state == "complete" and row.failure_reason == "unstable" and not row.feasible
    assert row.metrics["throughput_rps"] > 0  # the figures are kept
    assert Store().job_front(Store().jobs_of("tiny")[-1]) == []
    proc = autotune("export", "--model", "tiny", "--out", str(tmp_path / "out"), "--pick", "trial 0")
    assert proc.returncode == 1 and "unstable" in proc.stderr
    assert not (tmp_path / "out").exists()
    proc = autotune("pareto", "--model", "tiny")
    assert "unstable" in proc.stderr and "0" in proc.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--repeats", "1"], "--repeats"),
        (["--concurrency", "2", "--rate", "5"], "exclusive"),
        (["--set", "max_batch_size=0"], "max_batch_size"),
    ],
)
def test_compare_refuses_bad_input_in_one_line(args, says):
    proc = autotune("compare", "--model", "tiny", *args)
    assert proc.returncode == 1 and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def _compare(*args: str) -> dict:
    proc = autotune("compare", "--model", *args, "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_compare_of_a_config_with_itself_claims_no_difference(tiny_model):
    # A 95% interval excludes the truth 1 time in 20 by design: one re-run keeps the test's own false
    # alarm rate at 1 in 400, while a systematic bias between the sides would fail both runs.
    args = ("tiny", "--concurrency", "2", "--protocol", "grpc", "--repeats", "3", *SHORT)  # the runs' spread decides
    for _attempt in range(2):
        result = _compare(*args)
        tp = result["metrics"]["throughput_rps"]
        assert result["a"]["config"] == result["b"]["config"]
        assert tp["n_a"] == tp["n_b"] == 3 and tp["ratio_ci95"][0] <= tp["ratio"] <= tp["ratio_ci95"][1]
        assert len(result["a"]["all_runs"]) == len(result["b"]["all_runs"]) == 3  # both sides kept, pids too
        runs = result["a"]["all_runs"] + result["b"]["all_runs"]
        assert all(r["server_pid"] and r["started_at"] for r in runs)
        assert len({r["server_pid"] for r in runs}) == 6  # every run on a fresh server (a job's confirmation too)
        if tp["verdict"] in ("equivalent", "inconclusive"):
            return
    pytest.fail(f"A/A compare found a difference twice: {tp}")


@pytest.mark.slow
def test_compare_finds_a_config_that_waits_for_batches_that_never_fill_slower_than_the_defaults(tiny_model):
    # Four clients can never fill a batch of 64: every request waits out the 20 ms timeout, so throughput
    # collapses to about 4 / 20 ms while the defaults answer at once. A difference compare must call.
    result = _compare(
        "tiny",
        "--set",
        "max_batch_size=64",
        "--set",
        "batch_timeout_micros=20000",
        "--concurrency",
        "4",
        "--repeats",
        "3",
        # SHORT's windows, but as many as 1 s of requests at ~200/s take: the verdict is on the runs' spread, not
        # on whether each run's windows agree.
        *SHORT,
        "--max-windows",
        "10",
    )
    tp, p99 = result["metrics"]["throughput_rps"], result["metrics"]["latency_p99_ms"]
    assert tp["verdict"] == "worse" and tp["ratio_ci95"][1] < 1, tp
    # Three p99s a side give a wide interval: the direction must be right, its significance may not show.
    assert p99["ratio"] > 1, p99
    assert result["verdict"] == "worse"


def test_front_candidates_are_confirmed_against_the_defaults_and_their_medians_replace_the_search_draws():
    # Confirmation's bookkeeping on fixed results; that each run is a fresh server is the A/A compare's test.
    from autotune.confirm import confirm_front, summary_line
    from autotune.knobs import config_from_dict
    from autotune.measure import TrialResult

    draw = {"throughput_rps": 1e9, "latency_p99_ms": 0.001}  # a search's lucky single draw
    front = [
        {"trial": 4, "config": {"enable_batching": False, "intra_op_threads": 1}, "metrics": dict(draw)},
        {"trial": 6, "config": {"enable_batching": True, "max_batch_size": 4}, "metrics": dict(draw)},
    ]
    runs: list[str] = []

    def measure(config, _say):
        runs.append(json.dumps(config.to_dict(), sort_keys=True))
        tp = 100.0 + 10 * config.intra_op_threads + (5 if config.enable_batching else 0) + len(runs) % 3
        metrics = {"throughput_rps": tp, "latency_p99_ms": 1000 / tp, "stable": True, "server_pid": 1000 + len(runs)}
        return TrialResult("tiny", "fake", "grpc", config, [], metrics=metrics)

    objectives = ["throughput_rps", "latency_p99_ms"]
    entries = confirm_front(front, 2, measure, lambda e: config_from_dict(e["config"]), objectives)
    assert len(runs) == 6 and runs[0] == runs[-1]  # defaults + 2 candidates, twice, ABC CBA
    for e in entries:
        assert e["confirmed"] is True and e["search_metrics"] == draw
        assert e["metrics"]["throughput_rps"] < 1e9  # the confirmed median replaced the lucky draw
        assert e["metrics"]["throughput_rps"] == pytest.approx(e["vs_defaults"]["throughput_rps"]["b_median"], abs=1e-3)
        assert e["defaults"]["runs"] == 2 and len(e["confirm_runs"]) == 2
        assert e["verdict"] in ("better", "worse", "equivalent", "inconclusive", "mixed")
        assert len(e["defaults_runs"]) == 2 and e["confirmation"]["stopped"] == "fixed"
    assert summary_line(entries, objectives) is not None


@pytest.mark.slow
def test_a_finished_job_stores_its_front_with_the_confirmation_and_says_how_it_compares(tiny_profile):
    # The search's draws are a replay that puts a candidate on the front beside the defaults (more throughput,
    # worse p99), so there is always one to confirm; the confirmation and the ramp after it are live servers.
    draws = {
        True: {"throughput_rps": 100.0, "latency_p99_ms": 10.0},
        False: {"throughput_rps": 150.0, "latency_p99_ms": 20.0},
    }

    def replay(config, _say, _pid):
        metrics = {**draws[is_default_config(config.to_dict())], "error_rate": 0.0, "stable": True}
        return TrialResult("tiny", "replay", "rest", config, [], metrics)

    # Any spread counts as stable: the test is about what is stored, not whether 0.2 s windows agree.
    settings = MeasureSettings(
        concurrency=2, window_s=0.2, warmup_s=0.1, max_windows=8, max_error_rate=0.01, tolerance=3, p99_tolerance=3
    )
    result = run_job(_tiny_study(confirm_repeats=2, confirm_max_repeats=2), 2, 10, settings, measure=replay)
    assert result.state == "done" and result.pareto
    proc = autotune("pareto", "--model", "tiny", "--json")
    entries = json.loads(proc.stdout)
    assert entries == json.loads(json.dumps(result.pareto))  # the stored snapshot is what pareto shows
    (defaults,) = [e for e in entries if is_default_config(e["config"])]
    (candidate,) = [e for e in entries if not is_default_config(e["config"])]
    assert defaults["confirmed"] is False  # the baseline every candidate is confirmed against, not a candidate
    assert candidate["confirmed"] is True and candidate["search_metrics"]["throughput_rps"] == 150.0
    medians = candidate["vs_defaults"]["throughput_rps"]
    assert candidate["metrics"]["throughput_rps"] == pytest.approx(medians["b_median"], abs=1e-3)  # live, not 150
    runs = candidate["confirm_runs"] + candidate["defaults_runs"]
    assert len(runs) == 4 and len({r["server_pid"] for r in runs}) == 4  # 2 + 2 fresh servers
    # The row export would deploy was ramped once more: its curve and where (or whether) its SLO broke.
    (swept,) = [e for e in entries if e.get("sweep")]
    curve = swept["sweep"]
    assert [p["concurrency"] for p in curve["points"]][:2] == [1, 2] and curve[
        "stopped"
    ] == "saturated"  # no SLO: to saturation
    proc = autotune("pareto", "--model", "tiny")
    assert "defaults" in proc.stderr  # one plain line against TF Serving's defaults, whatever the outcome
