"""Resource-aware studies: cost and resource objectives, limits on any metric, and CPU allocation searched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autotune.confirm import confirm_front
from autotune.cores import schedulable_cores
from autotune.cost import Prices, cost_per_1k_requests
from autotune.cpulimit import plan_cpus
from autotune.errors import AutotuneError
from autotune.fingerprint import fingerprint, host_info
from autotune.knobs import ServingConfig, config_from_dict
from autotune.measure import TrialResult
from autotune.seeds import allowance_seeds
from autotune.space import Host, build_space
from autotune.spec import KnobSpec, load_study
from autotune.states import TrialState
from autotune.store import Store
from autotune.tuner import constraint_values, is_feasible
from tests.conftest import autotune

ROOT = Path(__file__).resolve().parent.parent


def test_the_shipped_cost_study_serves_a_fixed_rate_at_the_lowest_cost():
    study = load_study(ROOT / "studies" / "resnet-cost.toml")
    assert list(study.objectives) == ["cost_per_1k_requests", "latency_p99_ms"]
    assert study.rate  # a fixed rate: achieving under 95% of the offer is infeasible, so cost compares like for like
    assert study.slo_p99_ms and study.core_hour_price > 0


def test_limits_on_any_metric_and_prices_parse_and_bad_ones_are_one_line_errors(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        'model = "tiny"\n[slo]\nmin_throughput_rps = 20\nmax_cpu_cores = 1.5\nmax_rss_mb = 900\n'
        "max_gpu_mem_mb = 4000\n[cost]\ncore_hour = 0.04\ngpu_gib_hour = 0.1\n"
        '[objectives]\ncost_per_1k_requests = "minimize"\nrss_mb = "minimize"\n'
    )
    study = load_study(path)
    assert study.limits == {"min_throughput_rps": 20, "max_cpu_cores": 1.5, "max_rss_mb": 900, "max_gpu_mem_mb": 4000}
    assert (study.core_hour_price, study.gpu_gib_hour_price) == (0.04, 0.1)
    for text, words in [
        ("[slo]\nmax_cpu_cores = 0\n", "slo.max_cpu_cores: must be > 0"),
        ("[slo]\nmax_disk_mb = 3\n", "slo.max_disk_mb: unknown key"),
        ("[cost]\ncore_hour = -1\n", "cost.core_hour: must be >= 0"),
        ("[cost]\ntpu_hour = 1\n", "cost.tpu_hour: unknown key"),
    ]:
        path.write_text(f'model = "tiny"\n{text}')
        with pytest.raises(AutotuneError, match=words) as caught:
            load_study(path)
        assert "\n" not in str(caught.value)


def test_cost_is_the_allocation_priced_for_the_time_a_thousand_answers_take():
    assert cost_per_1k_requests(100.0, 2.0, None, Prices(core_hour=3.6)) == pytest.approx(0.02)
    # A GiB of GPU memory held for the same 10 s, at its own price.
    assert cost_per_1k_requests(100.0, 2.0, 1024.0, Prices(3.6, 36.0)) == pytest.approx(0.12)
    assert cost_per_1k_requests(0.0, 2.0, None, Prices()) is None


def test_limits_are_constraints_measured_in_their_metrics_units():
    metrics = {"latency_p99_ms": 10.0, "error_rate": 0.0, "throughput_rps": 50.0, "cpu_cores": 1.8, "rss_mb": 700}
    limits = {"min_throughput_rps": 60.0, "max_cpu_cores": 1.5, "max_rss_mb": 800.0, "max_gpu_mem_mb": 100.0}
    named = constraint_values(metrics, 100.0, 0.01, 0.95, limits)
    assert named["min_throughput_rps"] == pytest.approx(10.0)  # 10 rps short
    assert named["max_cpu_cores"] == pytest.approx(0.3)  # 0.3 cores over
    assert named["max_rss_mb"] < 0 and named["max_gpu_mem_mb"] == 0  # no GPU measured: none used
    assert not is_feasible(metrics, 100.0, 0.01, 0.95, limits)
    assert is_feasible(metrics, 100.0, 0.01, 0.95, {"max_rss_mb": 800.0})


def test_a_cost_objective_searches_the_cpu_allowance_in_steps_the_host_can_enforce():
    assert "cpus" not in build_space({}, Host(4, 0), ("throughput_rps", "latency_p99_ms"))
    space = build_space({}, Host(2, 0), ("cost_per_1k_requests",))
    assert space["cpus"].choices == (0.5, 1.0, 1.5, 0.0)  # 0: every core, TF Serving's defaults
    no_quota = Host(2, 0, cpu_quota_problem="no cgroup file system is mounted")
    assert build_space({}, no_quota, ("cpu_cores",))["cpus"].choices == (1.0, 0.0)
    assert [c.cpus for c in allowance_seeds(build_space({}, Host(4, 0), ("cost_per_1k_requests",)))] == [1, 2, 3]
    with pytest.raises(AutotuneError, match=r"space\.cpus: 3 is more than the 2 cores"):
        build_space({"cpus": KnobSpec(value=3.0)}, Host(2, 0))
    with pytest.raises(AutotuneError, match=r"space\.cpus: a fractional allowance needs a CFS quota, but no cgroup"):
        build_space({"cpus": KnobSpec(choices=(0.5, 1.0))}, no_quota)


def _run(config: ServingConfig, **metrics: float) -> TrialResult:
    base = {"stable": True, "error_rate": 0.0, "throughput_rps": 30.0, "offered_rps": 30.0, "achieved_rps": 30.0}
    return TrialResult("m", "local", "rest", config, [], {**base, **metrics})


def test_a_confirmed_candidate_that_breaks_the_slo_is_infeasible_whatever_it_saves():
    cheap, cheaper = ServingConfig(cpus=1.0), ServingConfig(cpus=0.5)
    figures = {  # per config: (cost, p99) of each fresh server
        ServingConfig(): [(0.02, 40.0), (0.021, 42.0), (0.019, 41.0)],
        cheap: [(0.010, 60.0), (0.011, 58.0), (0.0105, 61.0)],
        cheaper: [(0.005, 400.0), (0.0052, 380.0), (0.0051, 390.0)],
    }
    seen: dict[ServingConfig, int] = {}

    def measure(config, _say):
        i = seen[config] = seen.get(config, -1) + 1
        cost, p99 = figures[config][i]
        return _run(config, cost_per_1k_requests=cost, latency_p99_ms=p99)

    front = [
        {"trial": 1, "config": cheap.to_dict(), "metrics": {"cost_per_1k_requests": 0.01, "offered_rps": 33.0}},
        {"trial": 2, "config": cheaper.to_dict(), "metrics": {"cost_per_1k_requests": 0.005}},
    ]
    entries = confirm_front(
        front,
        3,
        measure,
        lambda e: config_from_dict(e["config"]),
        ["cost_per_1k_requests"],
        feasible=lambda m: is_feasible(m, 100.0, 0.001, 0.95),
    )
    by_trial = {e["trial"]: e for e in entries}
    assert by_trial[1]["verdict"] == "better" and by_trial[1]["vs_defaults"]["cost_per_1k_requests"]["ratio"] < 0.6
    assert by_trial[2]["verdict"] == "infeasible"  # half the cost, but p99 ~390 ms against a 100 ms SLO
    assert by_trial[1]["metrics"]["offered_rps"] == 30.0  # the confirmed median, not the search draw's 33


@pytest.mark.slow
@pytest.mark.skipif(len(schedulable_cores()) < 2, reason="a cheaper allowance needs 2+ cores")
def test_a_cost_study_measures_cpu_allowances_and_prices_every_trial(autotune_home, tmp_path):
    study = tmp_path / "tiny-cost.toml"
    # The batching guide's first configs: after the defaults, the one-core allowance this test prices.
    study.write_text(
        'model = "tiny"\nbackend = "local"\nseeds = "guide"\n[slo]\nlatency_p99_ms = 200\nmax_error_rate = 0.01\n'
        '[objectives]\ncost_per_1k_requests = "minimize"\n'
        "[budget]\ntrials = 2\nconfirm_repeats = 0\n"
        "[load]\nrate = 50\nwindow_s = 0.5\nwarmup_s = 0.2\nmax_windows = 12\n"
        # Both trials must be feasible (stable): any windows holding 200 requests count as stable here.
        "tolerance = 3\np99_tolerance = 3\n"
    )
    db = f"sqlite:///{tmp_path / 'cost.db'}"
    done = autotune("start", "--study", str(study), "--foreground", "--json", db=db, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    job = Store(db).pick_job("tiny", None, fingerprint(host_info()))
    allowances = {t.config.get("cpus"): t.metrics.get("cpus_allocated") for t in job.trials if t.metrics}
    assert allowances[1.0] == 1.0 and allowances[0.0] == plan_cpus(0, schedulable_cores()).allocated
    complete = [t for t in job.trials if t.state == TrialState.complete]
    assert complete and all(t.metrics["cost_per_1k_requests"] > 0 for t in complete)
    (cheapest,) = json.loads(autotune("pareto", "--model", "tiny", "--json", db=db).stdout)
    seen = [(t.config.get("cpus"), t.state, t.metrics) for t in job.trials]
    # 50 rps is a quarter of what one core serves the tiny model here, so both allowances meet the SLO
    assert cheapest["config"]["cpus"] == 1.0, seen  # the same rate served on one core of two costs half
