"""Warm-up files: written as TF Serving reads them, placed beside the model without touching it, replayed by
the stand-in before it reports AVAILABLE, and shipped with every export."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from autotune.fingerprint import fingerprint, host_info
from autotune.knobs import ServingConfig
from autotune.measure import MeasureSettings, run_trial
from autotune.servers.argv import WARMUP_FILE
from autotune.servers.backends import local_backend
from autotune.servers.process import ServerStartError
from autotune.states import JobState
from autotune.store import Store
from autotune.traffic.requests import load_requests
from autotune.warmup import warmed_model_base, write_warmup_file
from tests.conftest import autotune
from tests.stored_jobs import add_job, add_trial


def _jsonl(path: Path, batches: list[int]) -> Path:
    rng = np.random.default_rng(5)
    path.write_text("".join(json.dumps({"instances": rng.standard_normal((n, 32)).tolist()}) + "\n" for n in batches))
    return path


def _read_with_tensorflow(path: Path) -> list:
    """Every record of PATH, framed and parsed by TensorFlow and TF Serving's own code."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]


def test_a_warmup_file_is_read_back_by_tensorflow_with_the_requests_it_was_made_of(tiny_model, tmp_path):
    import tensorflow as tf

    requests = load_requests(str(_jsonl(tmp_path / "r.jsonl", [1, 3, 2])), tiny_model.signature)
    write_warmup_file(tmp_path / "w", requests.payloads("tiny", "serving_default"))
    logs = _read_with_tensorflow(tmp_path / "w")
    assert [log.WhichOneof("log_type") for log in logs] == ["predict_log"] * 3
    for log, sent in zip(logs, requests.requests, strict=True):
        assert log.predict_log.request.model_spec.name == "tiny"
        np.testing.assert_array_equal(tf.make_ndarray(log.predict_log.request.inputs["inputs"]), sent.tensors["inputs"])


def test_the_warmed_model_links_the_users_files_and_never_writes_into_them(tiny_model, tmp_path):
    before = sorted(p.name for p in tiny_model.version_path.iterdir())
    payloads = load_requests(None, tiny_model.signature).payloads("tiny", "serving_default")
    base = warmed_model_base(tiny_model, payloads, tmp_path / "model")
    version = base / str(tiny_model.version)
    assert (version / "saved_model.pb").resolve() == (tiny_model.version_path / "saved_model.pb").resolve()
    assert len(_read_with_tensorflow(version / WARMUP_FILE)) == 1
    assert sorted(p.name for p in tiny_model.version_path.iterdir()) == before


@pytest.mark.slow
def test_a_trial_server_replays_the_warmup_before_it_is_available(tiny_model, tmp_path):
    path = _jsonl(tmp_path / "r.jsonl", [1, 2, 4])
    settings = MeasureSettings(
        concurrency=2, window_s=0.3, warmup_s=0.1, max_windows=4, requests_file=str(path), measure_unloaded=False
    )
    result = run_trial(tiny_model, ServingConfig(), settings, local_backend())
    assert result.ok, result.failure_message
    assert "--enable_model_warmup=true" in result.argv
    assert "warmed up tiny with 3 records" in (result.server_log_tail or "")


def _model_with_warmup(tiny_model, tmp_path: Path, records: list[bytes] | None, payload_file: Path | None = None):
    """A copy of tiny whose version directory ships its own warm-up file."""
    from autotune.models.resolve import resolve_model

    base = tmp_path / "own" / "tiny"
    shutil.copytree(tiny_model.base_path, base)
    target = base / str(tiny_model.version) / WARMUP_FILE
    target.parent.mkdir(parents=True)
    if payload_file is not None:
        payloads = load_requests(str(payload_file), tiny_model.signature).payloads("tiny", "serving_default")
        write_warmup_file(target, payloads)
    else:
        from autotune.tfrecord import write_records

        write_records(target, records or [])
    return resolve_model(str(base))


@pytest.mark.slow
def test_a_warmup_request_the_model_cannot_serve_fails_the_load_in_one_line(tiny_model, tmp_path, start_server):
    from autotune.traffic.payload import payload_of
    from autotune.warmup import prediction_log

    bad = payload_of("tiny", "serving_default", {"inputs": np.zeros((1, 8), np.float32)})
    model = _model_with_warmup(tiny_model, tmp_path, [prediction_log(bad)])
    server = start_server(model, wait=False)
    with pytest.raises(ServerStartError):
        server.wait_ready(server.rest_port, model.name, 120)
    assert "warm-up record 1 failed" in server.last_error_line()


@pytest.mark.slow
def test_a_models_own_warmup_file_is_used_as_it_is(tiny_model, tmp_path, start_server):
    model = _model_with_warmup(tiny_model, tmp_path, None, _jsonl(tmp_path / "r.jsonl", [2, 2]))
    settings = MeasureSettings(concurrency=1, window_s=0.3, warmup_s=0.1, max_windows=4, measure_unloaded=False)
    result = run_trial(model, ServingConfig(), settings, local_backend())
    assert result.ok, result.failure_message
    assert f"--model_base_path={model.base_path}" in result.argv  # not rebuilt: the model's own file serves
    assert "warmed up tiny with 2 records" in (result.server_log_tail or "")


@pytest.mark.slow
def test_an_export_ships_the_jobs_requests_as_its_warmup_file_and_mounts_it(tiny_model, tmp_path, start_server):
    db = f"sqlite:///{tmp_path / 'w.db'}"
    store = Store(db)
    path = _jsonl(tmp_path / "r.jsonl", [1, 2, 3, 4])
    settings = {"requests_file": str(path), "batch": None}
    job = add_job(store, store.model(tiny_model), fingerprint(host_info()), JobState.running, settings)
    add_trial(store, job, 0, rps=40.0, p99=20.0)
    store.finish_job(job, JobState.done)
    out = tmp_path / "deploy"
    done = autotune("export", "--model", "tiny", "--out", str(out), "--json", db=db)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert str(WARMUP_FILE) in doc["files"] and doc["warmup"] == f"warm-up from {path} requests (4 records)"
    logs = _read_with_tensorflow(out / WARMUP_FILE)
    assert [len(log.predict_log.request.inputs["inputs"].tensor_shape.dim) for log in logs] == [2] * 4
    assert "--enable_model_warmup=true" in (out / "tfserving.args").read_text().split()
    script = shlex.split((out / "docker-run.sh").read_text().replace("\\\n", " "))
    mounts = [script[i + 1] for i, arg in enumerate(script) if arg == "-v"]
    version = tiny_model.version_path
    assert f"{out / WARMUP_FILE}:/models/tiny/{tiny_model.version}/{WARMUP_FILE}:ro" in mounts
    assert f"{version / 'saved_model.pb'}:/models/tiny/{tiny_model.version}/saved_model.pb:ro" in mounts
    # The shipped file is one the server replays: placed in a copy of the model, the stand-in loads it.
    copy = _model_with_warmup(tiny_model, tmp_path, _raw_records(out / WARMUP_FILE))
    server = start_server(copy)
    assert "warmed up tiny with 4 records" in server.log_tail(20)


def _raw_records(path: Path) -> list[bytes]:
    from autotune.tfrecord import read_records

    return list(read_records(path.read_bytes(), str(path)))


def test_a_models_own_warmup_file_is_linked_never_written_through(tiny_model, tmp_path):
    model = _model_with_warmup(tiny_model, tmp_path, None, _jsonl(tmp_path / "r.jsonl", [2, 2]))
    own = model.version_path / WARMUP_FILE
    before = own.read_bytes()
    payloads = load_requests(None, tiny_model.signature).payloads("tiny", "serving_default")
    base = warmed_model_base(model, payloads, tmp_path / "overlay", batching="max_batch_size { value: 4 }\n")
    version = base / str(model.version)
    assert (version / WARMUP_FILE).resolve() == own.resolve() and own.read_bytes() == before
    assert (version / "batching_params.pbtxt").read_text().startswith("max_batch_size")
