"""`autotune bench`: one config measured on a live server, failures reported, nothing left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from autotune.cores import schedulable_cores
from autotune.cpulimit import plan_cpus
from tests.conftest import AUTOTUNE, SHORT, autotune, our_processes, wait_load_flowing, wait_no_processes

METRICS = {
    "throughput_rps",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "unloaded_latency_p50_ms",
    "error_rate",
    "cpu_cores",
    "rss_mb",
    "gpu_util_pct",
    "gpu_mem_mb",
    "load_time_s",
    "concurrency",
    "stable",
    "client_saturated",
}


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_bench_json_has_every_design_metric(tiny_model, protocol):
    proc = autotune(
        "bench", "--model", "tiny", "--concurrency", "2", "--protocol", protocol, "--json", *SHORT, timeout=240
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert METRICS <= set(result)
    assert result["throughput_rps"] > 0
    assert result["latency_p50_ms"] <= result["latency_p90_ms"] <= result["latency_p99_ms"]
    assert result["error_rate"] == 0
    assert result["concurrency"] == 2
    assert result["cpu_cores"] > 0 and result["rss_mb"] > 50
    assert result["gpu_util_pct"] is None and result["gpu_mem_mb"] is None  # no GPU here
    assert result["config"] == {
        "enable_batching": False,
        "intra_op_threads": 0,
        "inter_op_threads": 0,
        "gpu_memory_fraction": 0.0,
        "cpus": 0.0,
    }
    # Unlimited: the server may use every core it was given (all but the generator's on 4+ cores).
    assert result["cpus_allocated"] == plan_cpus(0, schedulable_cores()).allocated
    assert result["cost_per_1k_requests"] > 0
    assert [lv["concurrency"] for lv in result["levels"]] == [1, 2]
    assert "failure_reason" not in result


@pytest.mark.slow
def test_bench_with_batching_and_open_loop(tiny_model):
    proc = autotune(
        "bench",
        "--model",
        "tiny",
        "--rate",
        "50",
        "--set",
        "max_batch_size=4",
        "--set",
        "batch_timeout_micros=2000",
        "--json",
        *SHORT,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["config"]["enable_batching"] is True and result["config"]["max_batch_size"] == 4
    assert result["rate_rps"] == 50 and result["concurrency"] is None
    # Poisson arrivals at 50/s over short windows: the completed rate is near the offered rate.
    assert 25 < result["throughput_rps"] < 80


@pytest.mark.slow
def test_ramp_without_concurrency_reports_an_operating_point(tiny_model):
    proc = autotune("bench", "--model", "tiny", "--max-concurrency", "4", "--json", *SHORT, timeout=240)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    levels = [lv["concurrency"] for lv in result["levels"]]
    assert levels[0] == 1 and levels == sorted(levels) and max(levels) <= 4
    # The operating point is the best trustworthy level: stable ones first.
    trusted = [lv for lv in result["levels"] if lv["stable"]] or result["levels"]
    best = max(trusted, key=lambda lv: lv["throughput_rps"])
    assert result["concurrency"] == best["concurrency"]


@pytest.mark.slow
def test_an_impossible_slo_is_reported_not_met(tiny_model):
    proc = autotune(
        "bench", "--model", "tiny", "--max-concurrency", "2", "--slo-ms", "0.001", "--json", *SHORT, timeout=240
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["slo_met"] is False
    assert len(result["levels"]) == 1  # the ramp stops at the first level that breaks the SLO


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "neither a built-in"),
        (["--model", "tiny", "--set", "bogus=1"], "unknown knob 'bogus'"),
        (["--model", "tiny", "--set", "max_batch_size=x"], "expected an integer"),
        (["--model", "tiny", "--set", "num_batch_threads=0"], "out of range"),
        (["--model", "tiny", "--set", "gpu_memory_fraction=0.5"], "needs a GPU"),
        (["--model", "tiny", "--concurrency", "2", "--rate", "5"], "exclusive"),
        (["--model", "tiny", "--rate", "-1"], "--rate"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tiny_model, args, message):
    proc = autotune("bench", *args, timeout=240)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]) == 1


def test_a_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "1").mkdir()
    proc = autotune("bench", "--model", str(tmp_path), timeout=240)
    assert proc.returncode == 1 and "no version directory" in proc.stderr and "Traceback" not in proc.stderr


def _child_of(bench: subprocess.Popen[str], marker: str, timeout: float = 120) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(bench.pid).children(recursive=True):
            try:
                if marker in " ".join(child.cmdline()):
                    return child
            except psutil.Error:
                continue
        time.sleep(0.2)
    raise AssertionError(f"bench never started {marker}")


def _wait_measuring(bench: subprocess.Popen[str], seconds: float) -> None:
    # Requests flowing (warm-up or a window), then SECONDS more of them.
    wait_load_flowing(psutil.Process(bench.pid))
    time.sleep(seconds)


def _bench_under_load(settle_s: float, *extra: str) -> tuple[subprocess.Popen[str], psutil.Process]:
    """A bench of tiny running in the background, once its server has been under load for SETTLE_S."""
    cmd = [*AUTOTUNE, "bench", "--model", "tiny", "--concurrency", "2", "--json"]
    bench = subprocess.Popen(
        [*cmd, "--window-s", "1", "--max-windows", "30", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = _child_of(bench, "autotune.servers.local")
    _wait_measuring(bench, settle_s)
    return bench, server


@pytest.mark.slow
def test_server_killed_mid_measurement_fails_the_bench_and_leaves_nothing(tiny_model):
    before = {p.pid for p in our_processes()}
    bench, server = _bench_under_load(1.0)
    os.kill(server.pid, signal.SIGKILL)
    stdout, stderr = bench.communicate(timeout=120)
    assert bench.returncode == 3, stderr
    result = json.loads(stdout)
    assert result["failure_reason"] == "server_crashed"
    assert "server" in result["failure_message"]
    assert "bench failed: server_crashed" in stderr
    assert not wait_no_processes(ignore=before)


@pytest.mark.slow
def test_a_hung_server_is_a_timeout_and_its_whole_group_is_killed(tiny_model):
    before = {p.pid for p in our_processes()}
    bench, server = _bench_under_load(0.5, "--request-timeout-s", "1")  # hung after 1 s silent, not 30
    os.kill(server.pid, signal.SIGSTOP)  # alive, listening, answering nothing
    stdout, stderr = bench.communicate(timeout=120)
    assert bench.returncode == 3, stderr
    result = json.loads(stdout)
    assert result["failure_reason"] == "timeout"
    assert "stopped answering" in result["failure_message"]
    assert not wait_no_processes(ignore=before)  # SIGKILL reaches a stopped process


@pytest.mark.slow
def test_a_killed_load_generator_fails_the_trial_and_stops_the_server(tiny_model):
    before = {p.pid for p in our_processes()}
    bench, server = _bench_under_load(0.5)
    generator = _child_of(bench, "autotune.load.generator")
    generator.kill()
    stdout, stderr = bench.communicate(timeout=120)
    assert bench.returncode == 3, stderr
    result = json.loads(stdout)
    assert result["failure_reason"] == "client_failed"
    assert "load generator" in result["failure_message"]
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    assert not wait_no_processes(ignore=before)


@pytest.mark.slow
def test_sigterm_to_bench_stops_server_and_load_generator(tiny_model):
    before = {p.pid for p in our_processes()}
    bench, server = _bench_under_load(0.5)
    bench.send_signal(signal.SIGTERM)
    stdout, _ = bench.communicate(timeout=60)
    assert bench.returncode == 130
    assert json.loads(stdout)["failure_reason"] == "interrupted"
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    assert not wait_no_processes(ignore=before)


@pytest.mark.slow
def test_sigterm_to_a_benchmark_script_stops_its_server_and_exits_as_interrupted(tiny_model, tmp_path):
    # record_grid.py once died on SIGTERM with its server left running: every script that starts servers takes
    # SIGTERM as Ctrl-C, so the trial's own cleanup runs.
    before = {p.pid for p in our_processes()}
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "record_grid.py"
    argv = ["--model", "tiny", "--grid", "heldout", "--concurrency", "2", "--window-s", "1", "--max-windows", "30"]
    argv += ["--repeats", "1", "--limit", "1", "--slo-ms", "1000", "--out", str(tmp_path / "grid.csv")]
    grid = subprocess.Popen([sys.executable, str(script), *argv], stderr=subprocess.PIPE, text=True)
    server = _child_of(grid, "autotune.servers.local")
    _wait_measuring(grid, 0.5)
    grid.send_signal(signal.SIGTERM)
    _, stderr = grid.communicate(timeout=60)
    assert grid.returncode == 1 and "interrupted: rerun the same command to resume" in stderr, stderr
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    assert not wait_no_processes(ignore=before)


@pytest.mark.slow
def test_a_model_the_server_cannot_load_is_server_start_failed(tiny_model, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model.base_path, broken)
    shutil.rmtree(broken / "1" / "variables")  # the graph reads fine, the weights are gone
    proc = autotune("bench", "--model", str(broken), "--concurrency", "1", "--json", *SHORT, timeout=240)
    assert proc.returncode == 3
    result = json.loads(proc.stdout)
    assert result["failure_reason"] == "server_start_failed"
    assert "failed to load model" in result["failure_message"]
    assert result["server_log_tail"]
    assert "bench failed: server_start_failed" in proc.stderr and "Traceback" not in proc.stderr
