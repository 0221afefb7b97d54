"""autotune-model-server speaks TF Serving's REST and gRPC APIs, with TF's batch op."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest
import requests

from autotune.measure import free_ports
from autotune.servers.local.__main__ import _batching
from autotune.servers.local.flags import parse_flags
from autotune.traffic.payload import synthetic_jpeg


def url(server, model, suffix=""):
    return f"http://127.0.0.1:{server.rest_port}/v1/models/{model.name}{suffix}"


def test_status_and_metadata(shared_tiny_server, tiny_model):
    server = shared_tiny_server
    status = requests.get(url(server, tiny_model)).json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    meta = requests.get(url(server, tiny_model, "/metadata")).json()
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["inputs"]["dtype"] == "DT_FLOAT"
    assert meta["model_spec"]["version"] == "1"


def test_predict_row_and_columnar_forms(shared_tiny_server, tiny_model):
    server = shared_tiny_server
    rows = requests.post(url(server, tiny_model, ":predict"), json={"instances": [[0.1] * 32, [0.2] * 32]}).json()
    assert len(rows["predictions"]) == 2
    assert set(rows["predictions"][0]) == {"classes", "scores"}
    assert abs(sum(rows["predictions"][0]["scores"]) - 1.0) < 1e-4
    cols = requests.post(url(server, tiny_model, ":predict"), json={"inputs": [[0.1] * 32]}).json()
    assert np.allclose(cols["outputs"]["scores"][0], rows["predictions"][0]["scores"], atol=1e-6)


def test_errors_look_like_tf_servings(shared_tiny_server, tiny_model):
    server = shared_tiny_server
    r = requests.post(f"http://127.0.0.1:{server.rest_port}/v1/models/other:predict", json={"instances": [[0.0] * 32]})
    assert r.status_code == 404 and "Servable not found" in r.json()["error"]
    r = requests.post(url(server, tiny_model, ":predict"), data=b"{not json")
    assert r.status_code == 400 and "error" in r.json()
    r = requests.post(url(server, tiny_model, ":predict"), json={"instances": [[0.0] * 31]})
    assert r.status_code == 400 and "error" in r.json()
    r = requests.post(url(server, tiny_model, ":predict"), json={"instances": [[0.0] * 32], "signature_name": "x"})
    assert r.status_code == 400 and "not found" in r.json()["error"]
    # The server is still healthy after bad requests.
    assert requests.post(url(server, tiny_model, ":predict"), json={"instances": [[0.0] * 32]}).status_code == 200


def test_oversized_body_is_refused_not_read(shared_tiny_server, tiny_model):
    import socket

    server = shared_tiny_server
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n{}")
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")
    assert requests.get(url(server, tiny_model)).status_code == 200


def test_servers_bind_loopback_only(shared_tiny_server, tiny_model):
    import psutil

    server = shared_tiny_server
    conns = [c for c in psutil.Process(server.pid).net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
    assert conns, "server has no listening sockets"
    assert {c.laddr.ip for c in conns} <= {"127.0.0.1", "::ffff:127.0.0.1"}


def test_a_model_that_fails_to_load_exits_nonzero_with_one_line(tmp_path):
    bad = tmp_path / "broken" / "1"
    bad.mkdir(parents=True)
    (bad / "saved_model.pb").write_bytes(b"this is not a protobuf")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "autotune.servers.local",
            f"--port={free_ports(1)[0]}",
            f"--model_base_path={bad.parent}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("autotune-model-server")]
    assert len(ours) == 1 and "failed to load model" in ours[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_busy_port_exits_nonzero_with_one_line(start_server, tiny_model):
    first = start_server(tiny_model)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "autotune.servers.local",
            f"--port={first.grpc_port}",
            "--rest_api_port=0",
            f"--model_base_path={tiny_model.base_path}",
            f"--model_name={tiny_model.name}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "busy" in proc.stderr and "Traceback" not in proc.stderr


def test_prometheus_metrics_when_monitoring_is_enabled(start_server, tiny_model, tmp_path):
    cfg = tmp_path / "monitoring.config"
    cfg.write_text('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n')
    server = start_server(tiny_model, f"--monitoring_config_file={cfg}")
    for _ in range(3):
        requests.post(url(server, tiny_model, ":predict"), json={"instances": [[0.0] * 32]})
    text = requests.get(f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics").text
    # As TF Serving writes a counter: its own name, no `_total` suffix.
    assert ':tensorflow:serving:request_count{model_name="tiny",status="OK"} 3.0' in text
    assert ":tensorflow:serving:request_latency_bucket" in text


@pytest.mark.slow
def test_tf_serving_resnet_clients_work_unchanged_with_batching(start_server, resnet_model, tmp_path):
    """The requests of TF Serving's resnet_client.py (REST, b64 JPEG) and resnet_client_grpc.py."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    batching = tmp_path / "batching.txt"
    batching.write_text(
        "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 20000 }\n"
        "num_batch_threads { value: 1 }\nmax_enqueued_batches { value: 100 }\n"
    )
    cfg = tmp_path / "monitoring.config"
    cfg.write_text("prometheus_config { enable: true }\n")
    server = start_server(
        resnet_model, "--enable_batching", f"--batching_parameters_file={batching}", f"--monitoring_config_file={cfg}"
    )
    jpeg = synthetic_jpeg()

    # resnet_client.py (MODEL_ACCEPT_JPG = True): the request string, byte for byte in form.
    predict_request = '{"instances" : [{"b64": "%s"}]}' % base64.b64encode(jpeg).decode()  # noqa: UP031
    rest_url = f"http://127.0.0.1:{server.rest_port}/v1/models/resnet:predict"
    response = requests.post(rest_url, data=predict_request)
    response.raise_for_status()
    prediction = response.json()["predictions"][0]
    assert isinstance(prediction["classes"], int) and len(prediction["probabilities"]) == 1000

    # resnet_client_grpc.py: PredictRequest with image_bytes as a [1] string tensor.
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "resnet"
    request.model_spec.signature_name = "serving_default"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(jpeg, shape=[1]))
    result = stub.Predict(request, 30.0)
    assert tf.make_ndarray(result.outputs["classes"]).shape == (1,)
    assert tf.make_ndarray(result.outputs["probabilities"]).shape == (1, 1000)
    channel.close()

    # Eight concurrent single-image requests are merged by TF's batch op.
    errors: list[str] = []

    def one() -> None:
        r = requests.post(rest_url, data=predict_request, timeout=120)
        if r.status_code != 200:
            errors.append(r.text)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    metrics = requests.get(f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics").text
    sizes = {}
    for line in metrics.splitlines():
        if line.startswith(":tensorflow:serving:batching:processed_batch_size_"):
            name, value = line.rsplit(" ", 1)
            sizes[name.split("{")[0].rsplit("_", 1)[1]] = float(value)
    assert sizes["sum"] == 10  # every image went through the batch op
    assert sizes["count"] < 10  # and some batches held more than one image
    print(json.dumps(sizes))


def test_sigterm_stops_the_server_promptly(start_server, tiny_model, tmp_path):
    import signal
    import time

    cfg = tmp_path / "monitoring.config"
    cfg.write_text("prometheus_config { enable: true }\n")
    server = start_server(tiny_model, f"--monitoring_config_file={cfg}")
    requests.post(url(server, tiny_model, ":predict"), json={"instances": [[0.0] * 32]})
    requests.get(f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics")
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5


def _schedulable_cpus() -> int:
    return len(os.sched_getaffinity(0))


def test_thread_defaults_are_tf_servings_four_per_schedulable_cpu():
    # TF Serving: Server::Options http_num_threads and grpc_max_threads = 4 * port::NumSchedulableCPUs().
    flags = parse_flags(["--model_base_path=/m"])
    assert flags.rest_api_num_threads == 4 * _schedulable_cpus()
    assert flags.grpc_max_threads == 4 * _schedulable_cpus()
    assert parse_flags(["--model_base_path=/m", "--rest_api_num_threads=3"]).rest_api_num_threads == 3


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two schedulable CPUs to narrow the mask")
def test_thread_defaults_follow_the_affinity_mask_not_the_machine():
    mask = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(mask)})
    try:
        flags = parse_flags(["--model_base_path=/m"])
    finally:
        os.sched_setaffinity(0, mask)
    assert (flags.rest_api_num_threads, flags.grpc_max_threads) == (4, 4)


def _batching_of(tmp_path, text: str | None):
    argv = ["--model_base_path=/m", "--enable_batching"]
    if text is not None:
        (tmp_path / "batching.txt").write_text(text)
        argv.append(f"--batching_parameters_file={tmp_path / 'batching.txt'}")
    return _batching(parse_flags(argv))


def test_unset_batching_fields_take_tf_servings_scheduler_defaults(tmp_path):
    from autotune.servers.local.servable import BatchingOptions

    # tensorflow/core/kernels/batching_util/shared_batch_scheduler.h: QueueOptions and Options defaults.
    tf_serving = BatchingOptions(1000, 0, _schedulable_cpus(), 10, ())
    assert _batching_of(tmp_path, "") == tf_serving  # an empty batching file
    assert _batching_of(tmp_path, None) == tf_serving  # --enable_batching without a file
    partial = _batching_of(tmp_path, "max_batch_size { value: 8 }\nnum_batch_threads { value: 2 }\n")
    assert partial == BatchingOptions(8, 0, 2, 10, ())
    assert _batching(parse_flags(["--model_base_path=/m"])) is None


def test_tf_servings_default_batching_loads_serves_and_refuses_oversized_requests(start_server, tiny_model):
    server = start_server(tiny_model, "--enable_batching")  # max_batch_size 1000, timeout 0, 10 enqueued batches
    full = requests.post(url(server, tiny_model, ":predict"), json={"instances": [[0.1] * 32] * 1000})
    assert full.status_code == 200 and len(full.json()["predictions"]) == 1000
    # Like TF Serving (enable_large_batch_splitting unset), a request over max_batch_size is refused, not split.
    over = requests.post(url(server, tiny_model, ":predict"), json={"instances": [[0.1] * 32] * 1001})
    assert over.status_code == 400 and "1001" in over.json()["error"]


def _batch_sizes(server) -> dict[str, float]:
    """The processed_batch_size histogram: its buckets by `le`, plus 'sum' and 'count'."""
    text = requests.get(f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics").text
    found = {}
    for line in text.splitlines():
        if line.startswith(":tensorflow:serving:batching:processed_batch_size_"):
            name, value = line.rsplit(" ", 1)
            le = name.split('le="', 1)[1].split('"', 1)[0] if 'le="' in name else name.split("{")[0].rsplit("_", 1)[1]
            found[le] = float(value)
    return found


def _all_at_once(send, n: int) -> list[bool]:
    """Call SEND from N threads at once; what each call returned."""
    answered: list[bool] = []
    threads = [threading.Thread(target=lambda: answered.append(send())) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answered


@pytest.mark.slow
def test_thread_limits_cap_the_requests_in_flight(start_server, tiny_model, tmp_path):
    """Six concurrent requests, two threads per API: all answered, never more than two inside the batch op.

    The batch op waits 0.5 s for a batch to fill, so requests in flight together share one batch:
    the largest batch is the number of requests the server let in at once.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    batching = tmp_path / "batching.txt"
    batching.write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 500000 }\n")
    cfg = tmp_path / "monitoring.config"
    cfg.write_text("prometheus_config { enable: true }\n")
    server = start_server(
        tiny_model,
        "--rest_api_num_threads=2",
        "--grpc_max_threads=2",
        "--enable_batching",
        f"--batching_parameters_file={batching}",
        f"--monitoring_config_file={cfg}",
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = tiny_model.name
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 32), np.float32)))

    def rest() -> bool:
        r = requests.post(url(server, tiny_model, ":predict"), json={"instances": [[0.0] * 32]}, timeout=60)
        return r.status_code == 200

    def grpc_call() -> bool:
        return "scores" in stub.Predict(request, 60.0).outputs

    for send in (rest, grpc_call):
        before = _batch_sizes(server).get("count", 0.0)
        answered = _all_at_once(send, 6)
        sizes = _batch_sizes(server)
        assert answered == [True] * 6, send.__name__
        assert sizes["2.0"] == sizes["count"], f"{send.__name__}: a batch held more than 2 requests: {sizes}"
        assert sizes["count"] - before < 6, f"{send.__name__}: never two requests in flight at once: {sizes}"
    channel.close()


def test_a_client_that_hangs_up_mid_request_leaves_no_traceback_in_the_log(shared_tiny_server, tiny_model):
    import socket
    import struct
    import time

    server = shared_tiny_server
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", server.rest_port))
        head = f"POST /v1/models/{tiny_model.name}:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
        sock.sendall(head.encode() + b'{"instances": [')
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        sock.close()
    time.sleep(0.5)
    answer = requests.post(url(server, tiny_model, ":predict"), json={"instances": [[0.0] * 32]}, timeout=10)
    assert answer.status_code == 200
    assert "Traceback" not in server.log_path.read_text()
