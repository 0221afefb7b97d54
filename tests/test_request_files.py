"""Request files: a user's traffic is read in TF Serving's own formats, checked before anything starts,
and replayed over REST and gRPC."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from autotune.errors import AutotuneError
from autotune.tfrecord import write_records
from autotune.traffic.payload import synthetic_jpeg
from autotune.traffic.requests import load_requests, read_request_file
from tests.conftest import SHORT, autotune

RNG = np.random.default_rng(7)


def _jsonl(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def _tiny_rows(n: int) -> list[list[float]]:
    return RNG.standard_normal((n, 32)).round(4).tolist()


def _prediction_logs(path: Path, requests: list) -> Path:
    """A warm-up style file written by TensorFlow's own writer and TF Serving's own messages."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    with tf.io.TFRecordWriter(str(path)) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def _predict_request(**inputs):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    for name, (value, kwargs) in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value, **kwargs))
    return request


def test_json_lines_in_row_and_columnar_form_are_read_as_the_server_reads_them(tiny_model, tmp_path):
    rows, cols = _tiny_rows(2), _tiny_rows(3)
    path = _jsonl(tmp_path / "r.jsonl", [{"instances": rows}, {"inputs": {"inputs": cols}}, {"inputs": rows}])
    requests = read_request_file(path, tiny_model.signature)
    assert requests.format == "jsonl"
    assert [r.instances for r in requests.requests] == [2, 3, 2]
    assert [r.row for r in requests.requests] == [True, False, False]
    np.testing.assert_allclose(requests.requests[1].tensors["inputs"], np.array(cols, np.float32))
    # Each record is sent in the form it came in.
    bodies = [json.loads(p.rest_body) for p in requests.payloads("tiny", "serving_default")]
    assert "instances" in bodies[0] and "inputs" in bodies[1]


def test_prediction_logs_written_by_tensorflow_are_read_with_every_value_encoding(tiny_model, tmp_path):
    import tensorflow as tf

    packed = RNG.standard_normal((3, 32)).astype(np.float32)
    path = _prediction_logs(
        tmp_path / "warmup",
        [
            _predict_request(inputs=(packed, {})),  # tensor_content
            _predict_request(inputs=([0.25] * 64, {"shape": [2, 32], "dtype": tf.float32})),  # float_val
            _predict_request(inputs=(0.5, {"shape": [1, 32], "dtype": tf.float32})),  # one value, broadcast
        ],
    )
    requests = read_request_file(path, tiny_model.signature)
    assert requests.format == "predictionlog"
    np.testing.assert_array_equal(requests.requests[0].tensors["inputs"], packed)
    np.testing.assert_array_equal(requests.requests[1].tensors["inputs"], np.full((2, 32), 0.25, np.float32))
    np.testing.assert_array_equal(requests.requests[2].tensors["inputs"], np.full((1, 32), 0.5, np.float32))


def test_image_requests_travel_as_b64_strings(resnet_model, tmp_path):
    (name,) = resnet_model.signature.inputs
    jpeg = synthetic_jpeg(seed=3)
    path = _jsonl(tmp_path / "img.jsonl", [{"instances": [{"b64": base64.b64encode(jpeg).decode()}]}])
    (request,) = read_request_file(path, resnet_model.signature).requests
    assert request.tensors[name].tolist() == [jpeg]
    body = json.loads(
        load_requests(str(path), resnet_model.signature).payloads("resnet", "serving_default")[0].rest_body
    )
    assert body == {"instances": [{"b64": base64.b64encode(jpeg).decode()}]}


def test_batch_regroups_the_files_instances_in_order_round_robin(tiny_model, tmp_path):
    rows = _tiny_rows(5)
    path = _jsonl(tmp_path / "r.jsonl", [{"instances": rows[:2]}, {"instances": rows[2:]}])
    requests = load_requests(str(path), tiny_model.signature, batch=2)
    assert [r.instances for r in requests.requests] == [2, 2, 2]
    sent = np.concatenate([r.tensors["inputs"] for r in requests.requests])
    order = [0, 1, 2, 3, 4, 0]  # the last request wraps around to the first instance
    np.testing.assert_allclose(sent, np.array(rows, np.float32)[order])
    assert requests.instances_per_request == 2


def test_synthetic_requests_take_a_batch_too(tiny_model):
    requests = load_requests(None, tiny_model.signature, batch=8)
    assert requests.source == "synthetic" and requests.requests[0].instances == 8


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        ([{"instances": [[1.0] * 31]}], r"line 1: input 'inputs' has shape \(1, 31\); the signature takes \(-1, 32\)"),
        ([{"instances": [{"pixels": [1.0] * 32}]}], r"line 1: .*do not match inputs \['inputs'\]"),
        ([{"instances": [["a"] * 32]}], r"line 1: expected a number for a float32 input"),
        ([{"instances": [[1.0] * 32]}, {"instances": []}], r"line 2: 'instances' must be a non-empty list"),
        ([{"instances": [[1.0] * 32], "signature_name": "other"}], r"line 1: calls signature 'other'"),
    ],
)
def test_a_record_that_does_not_fit_the_signature_is_a_one_line_error_naming_it(tiny_model, tmp_path, docs, message):
    path = _jsonl(tmp_path / "bad.jsonl", docs)
    with pytest.raises(AutotuneError, match=message):
        read_request_file(path, tiny_model.signature)


def test_broken_files_are_one_line_errors(tiny_model, tmp_path):
    (tmp_path / "garbage.jsonl").write_text('{"instances": [[1.0]]\n')
    with pytest.raises(AutotuneError, match=r"line 1: not JSON"):
        read_request_file(tmp_path / "garbage.jsonl", tiny_model.signature)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(AutotuneError, match="no requests in it"):
        read_request_file(tmp_path / "empty.jsonl", tiny_model.signature)
    good = _prediction_logs(tmp_path / "w", [_predict_request(inputs=(np.zeros((1, 32), np.float32), {}))] * 2)
    (tmp_path / "torn").write_bytes(good.read_bytes()[:-3])
    with pytest.raises(AutotuneError, match=r"record 2: truncated"):
        read_request_file(tmp_path / "torn", tiny_model.signature)
    flipped = bytearray(good.read_bytes())
    flipped[20] ^= 0xFF
    (tmp_path / "flipped").write_bytes(bytes(flipped))
    with pytest.raises(AutotuneError, match=r"record 1: corrupt data"):
        read_request_file(tmp_path / "flipped", tiny_model.signature)
    wrong_dtype = _prediction_logs(tmp_path / "i", [_predict_request(inputs=(np.zeros((1, 32), np.int32), {}))])
    with pytest.raises(AutotuneError, match=r"record 1: input 'inputs' is int32; the signature takes float32"):
        read_request_file(wrong_dtype, tiny_model.signature)
    from tensorflow_serving.apis import prediction_log_pb2

    classify = prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog()).SerializeToString()
    write_records(tmp_path / "classify", [classify])
    with pytest.raises(AutotuneError, match=r"record 1: is a classify_log; only predict_log records are replayed"):
        read_request_file(tmp_path / "classify", tiny_model.signature)


@pytest.mark.slow
def test_bench_replays_a_json_lines_file_over_rest_and_a_prediction_log_over_grpc(tiny_model, tmp_path):
    jsonl = _jsonl(tmp_path / "r.jsonl", [{"instances": _tiny_rows(2)}, {"inputs": _tiny_rows(3)}])
    logs = _prediction_logs(tmp_path / "w", [_predict_request(inputs=(np.ones((4, 32), np.float32), {}))])
    for protocol, path, per_request in (("rest", jsonl, 2.5), ("grpc", logs, 4.0)):
        run = autotune(
            "bench", "--model", "tiny", "--backend", "local", "--concurrency", "2", "--protocol", protocol,
            "--requests", str(path), "--json", *SHORT,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        doc = json.loads(run.stdout)
        assert doc["traffic"]["source"] == str(path) and doc["instances_per_request"] == per_request
        assert doc["error_rate"] == 0 and doc["throughput_rps"] > 0
        assert doc["instances_rps"] == pytest.approx(doc["throughput_rps"] * per_request, rel=1e-3)


def test_a_bad_request_file_stops_bench_compare_and_start_before_any_server_starts(tiny_model, tmp_path):
    bad = _jsonl(tmp_path / "bad.jsonl", [{"instances": [[1.0] * 32]}, {"instances": [[1.0] * 8]}])
    study = tmp_path / "s.toml"
    study.write_text('model = "tiny"\n[load]\nrequests = "bad.jsonl"\n')
    shape = "bad.jsonl: line 2: input 'inputs' has shape (1, 8); the signature takes (-1, 32)"
    for args, expected in (
        (["bench", "--model", "tiny", "--backend", "local", "--requests", str(bad)], shape),
        (["compare", "--model", "tiny", "--backend", "local", "--requests", str(bad)], shape),
        (["start", "--study", str(study), "--foreground", "--trials", "1"], shape),
        (["bench", "--model", "tiny", "--requests", str(tmp_path / "nope.jsonl")], "nope.jsonl: cannot read"),
        (["bench", "--model", "tiny", "--backend", "local", "--batch", "0"], "batch must be in 1..4096"),
    ):
        run = autotune(*args, "--json")
        assert run.returncode == 1, (args, run.stderr)
        assert expected in json.loads(run.stdout)["error"], run.stdout
        assert "Traceback" not in run.stderr
