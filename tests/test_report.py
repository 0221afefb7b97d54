"""`autotune report`: gains over TF Serving's defaults under the same SLO, plots, trial table."""

from __future__ import annotations

import csv
import io
import json

import pytest

from autotune.knobs import ServingConfig, parse_assignments
from autotune.measure import LevelResult, TrialResult
from autotune.report import Row, calibration_html, calibration_of, calibration_png, rows_of, write_report
from autotune.store import Store
from autotune.store.schema import ParetoSnapshotRow
from autotune.sweep import summarize
from tests.stored_jobs import stored_study

DEFAULTS = ServingConfig().to_dict()
BATCHED = parse_assignments(["max_batch_size=8"]).to_dict()
THREADS = parse_assignments(["intra_op_threads=1"]).to_dict()


def _job(tiny_model, url, trials):
    """Record a job with TRIALS = [(config, state, throughput, p99, feasible)] through the real store."""
    store = Store(url)
    job = store.create_job(
        model_id=store.model(tiny_model),
        host_id=store.host({"cpu_model": "test cpu", "cpus": 2}, "fp-test"),
        study_name=f"autotune/tiny/{url[-12:]}",
        study=stored_study(slo_p99_ms=100.0),
        settings={},
        backend="local",
        trials_total=len(trials),
        minutes=1,
    )
    for n, (config, state, tp, p99, feasible) in enumerate(trials):
        store.begin_trial(job, n, config)
        metrics = {} if tp is None else {"throughput_rps": tp, "latency_p99_ms": p99, "cpu_cores": 1.0}
        store.finish_trial(
            job,
            n,
            state=state,
            metrics=metrics,
            objective_values=None if tp is None else [tp, p99],
            feasible=feasible,
            failure_reason=None if state == "complete" else "server_crashed",
        )
    store.finish_job(job, "done")
    return Store(url).jobs_of("tiny")[-1]


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'r.db'}"


def test_gains_are_against_the_defaults_trial_under_the_same_slo(tiny_model, url):
    job = _job(
        tiny_model,
        url,
        [
            (DEFAULTS, "complete", 100.0, 80.0, True),
            (BATCHED, "complete", 150.0, 60.0, True),
            (THREADS, "complete", 200.0, 140.0, False),  # faster but over the SLO: goodput 0
            (BATCHED, "failed", None, None, False),
        ],
    )
    rows, summary = rows_of(job)
    assert [r.defaults for r in rows] == [True, False, False, False]
    assert [r.goodput_rps for r in rows] == [100.0, 150.0, 0.0, 0.0]
    assert rows[1].gain_goodput == 1.5 and rows[1].gain_p99 == 0.75 and rows[1].pareto
    assert rows[2].gain_throughput == 2.0 and rows[2].gain_goodput is None and not rows[2].pareto
    assert not rows[0].pareto  # dominated by trial 1
    assert summary["best_trial"] == 1 and summary["best_gain_goodput"] == 1.5 and summary["defaults_feasible"]


def test_defaults_missing_the_slo_are_said_plainly(tiny_model, url, tmp_path):
    job = _job(tiny_model, url, [(DEFAULTS, "complete", 100.0, 300.0, False), (BATCHED, "complete", 90.0, 70.0, True)])
    _, summary = rows_of(job)
    assert summary["defaults_goodput_rps"] == 0.0 and summary["best_gain_goodput"] is None
    out = write_report(job, tmp_path / "rep", force=False)
    page = (out / "report.html").read_text()
    assert "defaults miss the SLO" in page
    table = list(csv.DictReader(io.StringIO((out / "trials.csv").read_text())))
    assert [row["goodput rps"] for row in table] == ["0.0", "90.0"]
    assert json.loads((out / "summary.json").read_text())["best_trial"] == 1
    assert (out / "pareto.png").stat().st_size > 10_000


def _ramp_result(points: list[tuple[int, float, float]]) -> TrialResult:
    """A ramp's trial result from (clients, rps, p99) per level."""
    levels = []
    for c, rps, p99 in points:
        figures = dict(throughput_rps=rps, latency_p50_ms=p99 / 2, latency_p90_ms=p99 * 0.9, latency_p99_ms=p99)
        unused = dict(gpu_util_pct=None, gpu_mem_mb=None, gpu_power_w=None, foreign_cores=None)
        levels.append(
            LevelResult(
                "closed",
                c,
                None,
                True,
                [],
                **figures,
                error_rate=0.0,
                cpu_cores=1.0,
                rss_mb=500.0,
                **unused,
                client_cpu_cores=0.1,
                client_saturated=False,
                requests=300,
            )
        )
    return TrialResult("tiny", "local", "rest", ServingConfig(), [], {}, levels)


def test_a_sweep_says_where_the_slo_breaks_or_that_it_held_to_the_ramps_end():
    broke = summarize(_ramp_result([(1, 10.0, 20.0), (2, 19.0, 40.0), (4, 30.0, 90.0), (8, 31.0, 180.0)]), 100.0)
    assert broke["slo_breaks_at_concurrency"] == 8 and broke["max_concurrency_within_slo"] == 4
    assert broke["stopped"] == "slo" and [p["concurrency"] for p in broke["points"]] == [1, 2, 4, 8]
    held = summarize(_ramp_result([(1, 10.0, 20.0), (2, 19.0, 40.0), (4, 19.5, 60.0)]), 100.0)
    assert held["slo_breaks_at_concurrency"] is None and held["stopped"] == "cap"
    assert summarize(_ramp_result([(1, 10.0, 20.0), (2, 10.2, 40.0)]), None)["stopped"] == "saturated"
    assert held["max_concurrency_within_slo"] == 4


def test_the_report_draws_the_deployed_picks_load_ramp(tiny_model, url, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOTUNE_DB_URL", url)
    job = _job(tiny_model, url, [(DEFAULTS, "complete", 100.0, 80.0, True)])
    ramp = summarize(_ramp_result([(1, 10.0, 20.0), (2, 19.0, 40.0), (4, 30.0, 120.0)]), 100.0)
    entry = {"trial": 0, "config": DEFAULTS, "metrics": {"throughput_rps": 100.0}, "sweep": ramp}
    store = Store(url)
    with store._tx() as s:
        s.add(ParetoSnapshotRow(job_id=job.id, entries=[entry]))  # what a confirming job stores last
    out = write_report(Store(url).jobs_of("tiny")[-1], tmp_path / "rep", force=False)
    page = (out / "report.html").read_text()
    assert "p99 breaks the SLO at 4 concurrent clients" in page and 'src="sweep.png"' in page
    assert (out / "sweep.png").stat().st_size > 10_000
    assert json.loads((out / "summary.json").read_text())["sweeps"][0]["max_concurrency_within_slo"] == 2


def test_the_calibration_gives_each_figures_median_miss_and_when_the_drift_rule_fired():
    def row(n: int, predicted_rps: float | None, state: str = "complete", stable: bool = True) -> Row:
        measured = {"throughput_rps": 100.0, "latency_p99_ms": 10.0, "cpu_cores": 1.0, "stable": stable}
        predicted = None if predicted_rps is None else {"throughput_rps": predicted_rps, "latency_p99_ms": 12.0}
        return Row(n, state, True, False, n == 0, DEFAULTS, measured, 0.0, None, None, None, None, predicted)

    assert calibration_of([row(0, None), row(1, None)]) is None  # a job that did not use the model
    rows = [row(n, 150.0) for n in range(6)] + [row(6, 100.0, stable=False), row(7, None, state="failed")]
    cal = calibration_of(rows)
    assert cal["trials"] == 6 and cal["drifted_after_trial"] == 4  # the fifth judged trial
    assert cal["median_abs_error"] == {"throughput_rps": 0.5, "latency_p99_ms": 0.2, "cpu_cores": None}
    assert "stopped trusting the model after trial 4" in calibration_html(cal)
    assert calibration_png(cal, "tiny")[:4] == b"\x89PNG"
