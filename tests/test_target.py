"""--target: measuring a TF Serving that already runs, without starting, stopping or changing it, and only where
the user allows."""

from __future__ import annotations

import json
import threading

import psutil
import pytest
import requests

from autotune.errors import AutotuneError
from autotune.load.generator import _check_target
from autotune.servers.target import parse_target
from tests.conftest import SHORT, autotune, servers_in

LOAD = ["--concurrency", "2", *SHORT]


def _bench(*args: str) -> dict:
    run = autotune("bench", "--model", "tiny", *LOAD, "--json", *args)
    assert run.returncode == 0, run.stdout + run.stderr
    return {**json.loads(run.stdout), "stderr": run.stderr}


@pytest.fixture(scope="module")
def running_server(tiny_model, tmp_path_factory: pytest.TempPathFactory):
    """The server every test here measures as a target, as users' servers run: started once, with its Prometheus
    counts on, never restarted by what measures it (each start costs ~6 s)."""
    home = tmp_path_factory.mktemp("target")
    monitoring = home / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n')
    with servers_in(home) as start:
        yield start(tiny_model, f"--monitoring_config_file={monitoring}")


@pytest.mark.slow
def test_a_running_server_is_measured_as_it_is_and_left_running(running_server):
    server = running_server
    pid, url = server.pid, f"http://127.0.0.1:{server.rest_port}"
    ours = _bench("--target", url)
    assert ours["backend"] == "target" and ours["target"] == url and ours["config"] is None
    assert ours["server_pid"] == pid and ours["cpu_cores"] > 0  # its process was found and sampled
    assert ours["error_rate"] == 0 and ours["load_time_s"] is None and ours["cost_per_1k_requests"] is None
    # Untouched: the same process, still serving.
    assert server.alive() and psutil.Process(pid).is_running()
    assert requests.get(f"{url}/v1/models/tiny", timeout=10).status_code == 200
    grpc = _bench("--target", url, "--target-grpc", f"127.0.0.1:{server.grpc_port}", "--protocol", "grpc")
    assert grpc["error_rate"] == 0 and grpc["throughput_rps"] > 0
    # A bench of the same (default) config on a server autotune starts lands near it: a sanity bound on a
    # shared 2-core machine, not a performance claim.
    fresh = _bench("--backend", "local")
    assert 0.5 < ours["throughput_rps"] / fresh["throughput_rps"] < 2.0


@pytest.mark.slow
def test_the_servers_own_count_shows_traffic_from_others(running_server):
    server = running_server
    url = f"http://127.0.0.1:{server.rest_port}"
    quiet = _bench("--target", url)
    # The server's count covers every answer, and past them only what the warning allows for: requests in flight
    # when the last window closed and those sent before the generator went idle (645 against 635 on a slow host).
    assert quiet["client_answered"] <= quiet["server_requests"] <= quiet["client_answered"] * 1.02 + 7
    assert "other traffic" not in quiet["stderr"]

    stop = threading.Event()

    def someone_else() -> None:
        body = json.dumps({"instances": [[0.0] * 32]})
        with requests.Session() as session:
            while not stop.is_set():
                session.post(f"{url}/v1/models/tiny:predict", data=body, timeout=10)

    other = threading.Thread(target=someone_else, daemon=True)
    other.start()
    try:
        busy = _bench("--target", url)
    finally:
        stop.set()
        other.join(timeout=15)
    assert busy["server_requests"] > busy["client_answered"] * 1.02 + 7
    assert "it served other traffic during the measurement" in " ".join(busy["stderr"].split())


@pytest.mark.slow
def test_compare_measures_the_running_server_as_side_a(running_server):
    server = running_server
    url = f"http://127.0.0.1:{server.rest_port}"
    args = ["--model", "tiny", "--backend", "local", "--target", url, "--repeats", "3", *LOAD, "--json"]
    run = autotune("compare", *args)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["verdict"] and server.alive()
    assert "as it runs" in " ".join(run.stderr.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "http://10.1.2.3:8501"], "target host 10.1.2.3 is not this machine"),
        (["--target", "http://10.1.2.3:8501", "--allow-remote", "10.9.9.9"], "--allow-remote 10.1.2.3"),
        (["--target", "https://127.0.0.1:8501"], "only http://"),
        (["--target", "127.0.0.1"], "expected HOST:PORT"),
        (["--target", "http://127.0.0.1:9", "--dry-run"], "--dry-run has nothing to show with --target"),
    ],
)
def test_a_target_autotune_may_not_load_is_refused_in_one_line_before_any_traffic(args, message):
    run = autotune("bench", "--model", "tiny", *args, "--json")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert message in json.loads(run.stdout)["error"]


def test_a_remote_host_is_allowed_only_when_named(tiny_model):
    target = parse_target("http://10.1.2.3:8501", "10.1.2.3:8500", ["10.1.2.3"])
    assert target.remote_hosts == ("10.1.2.3",)
    with pytest.raises(AutotuneError, match=r"--allow-remote 10\.1\.2\.4"):
        parse_target("http://10.1.2.3:8501", "10.1.2.4:8500", ["10.1.2.3"])
    # The generator process checks again, so a spec written by anything else cannot widen it.
    spec = {"target": "10.1.2.3:8500", "url": "http://10.1.2.3:8501/v1/models/m:predict"}
    with pytest.raises(SystemExit, match="refusing non-loopback target"):
        _check_target(spec)
    _check_target({**spec, "allow_hosts": ["10.1.2.3"]})


@pytest.mark.slow
def test_retune_check_target_sets_the_deployed_server_against_its_jobs_prediction(tiny_model, running_server, tmp_path):
    from dataclasses import asdict

    from autotune.fingerprint import fingerprint, host_info
    from autotune.spec import Study
    from autotune.states import JobState
    from autotune.store import Store
    from tests.stored_jobs import add_job, add_trial, set_job

    db = f"sqlite:///{tmp_path / 'check.db'}"
    store = Store(db)
    settings = {"concurrency": 2, "window_s": 0.3, "warmup_s": 0.2, "max_windows": 4, "measure_unloaded": False}
    job = add_job(store, store.model(tiny_model), fingerprint(host_info()), JobState.running, settings)
    set_job(store, job, study=asdict(Study(source="test", model="tiny")))
    add_trial(store, job, 0, rps=1e6, p99=1.0)  # a prediction no server here meets: drift, whatever the noise
    store.finish_job(job, JobState.done)
    server = running_server
    url = f"http://127.0.0.1:{server.rest_port}"
    run = autotune("retune", "--model", "tiny", "--check-target", url, "--json", db=db)
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(run.stdout)
    assert doc["predicted_goodput_rps"] == 1e6 and doc["measured_goodput_rps"] < 1e6
    # Goodput is 0 for a reading that missed the SLO or did not settle; the raw figures are kept either way.
    assert (doc["measured_goodput_rps"] > 0) == doc["feasible"]
    assert doc["measurement"]["throughput_rps"] > 0 and doc["measurement"]["concurrency"] == 2
    assert doc["drifted"] is True
    (check,) = Store(db).drift_checks(job)
    assert check["causes"] == [f"target:{url}"] and check["drifted"] and server.alive()
