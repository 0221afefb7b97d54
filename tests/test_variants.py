"""Model variants: TFLite float16 and int8 built where TF Serving looks for them, and the accuracy guard that
rejects a variant whose answers differ from the original's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autotune.errors import AutotuneError
from autotune.models.accuracy import compare_outputs, savedmodel_outputs, tflite_outputs
from autotune.models.optimize import guard_inputs
from autotune.models.variants import TFLITE_FILE, build_variant
from tests.conftest import autotune


def test_agreement_and_errors_are_counted_per_input():
    ref = [{"scores": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32)}]
    same = compare_outputs(ref, ref)
    assert (same.samples, same.top1_agreement, same.max_abs_error) == (3, 1.0, 0.0)
    flipped = [{"scores": np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]], np.float32)}]
    worse = compare_outputs(ref, flipped)
    assert worse.top1_agreement == pytest.approx(2 / 3) and worse.max_abs_error == pytest.approx(0.2)
    assert worse.problem(0.99) == "top-1 agreement 0.667 < 0.99"
    assert worse.problem(0.5) is None and worse.problem(None, max_abs=0.1) == "max abs error 0.2 > 0.1"


# float16 weights give the same answers, to float16's precision; int8 weights move near-ties between random-weight
# classes: measured, not assumed.
@pytest.mark.parametrize(("variant", "min_top1", "max_abs"), [("tflite_fp16", 1.0, 1e-3), ("tflite_int8", 0.8, 0.05)])
def test_a_variant_sits_beside_the_savedmodel_and_answers_like_it(tiny_model, tmp_path, variant, min_top1, max_abs):
    built = build_variant(tiny_model, variant, tmp_path / variant)
    version = tmp_path / variant / str(tiny_model.version)
    assert built.tflite == version / TFLITE_FILE and (version / "saved_model.pb").is_file()
    inputs = guard_inputs(tiny_model, None, 64)
    accuracy = compare_outputs(
        savedmodel_outputs(tiny_model, inputs), tflite_outputs(built.tflite, "serving_default", inputs)
    )
    assert accuracy.samples == 64
    assert min_top1 <= accuracy.top1_agreement <= 1.0 and accuracy.max_abs_error < max_abs


def test_a_variant_with_its_weights_zeroed_is_rejected_by_the_guard(tiny_model, tmp_path):
    import tensorflow as tf

    from autotune.models.resolve import resolve_model

    loaded = tf.saved_model.load(str(tiny_model.version_path))
    serve = loaded.signatures["serving_default"]
    assert serve.variables  # the weights the signature reads
    for variable in serve.variables:
        variable.assign(tf.zeros_like(variable))
    broken_base = tmp_path / "zeroed"
    tf.saved_model.save(loaded, str(broken_base / "1"), signatures=serve)
    broken = build_variant(resolve_model(str(broken_base)), "tflite_fp16", tmp_path / "variant")
    inputs = guard_inputs(tiny_model, None, 64)
    accuracy = compare_outputs(
        savedmodel_outputs(tiny_model, inputs), tflite_outputs(broken.tflite, "serving_default", inputs)
    )
    assert accuracy.top1_agreement < 0.5
    assert accuracy.problem().startswith("top-1 agreement")


@pytest.mark.slow
def test_models_optimize_builds_every_variant_and_reports_the_guard(tiny_model, tmp_path):
    out = tmp_path / "variants"
    run = autotune("models", "optimize", "tiny", "--out", str(out), "--samples", "32", "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert [v["variant"] for v in doc["variants"]] == ["tflite_fp16", "tflite_int8", "xla"]
    for v in doc["variants"]:
        changed = TFLITE_FILE if v["variant"].startswith("tflite_") else "saved_model.pb"  # xla: the graph, re-saved
        assert (out / v["variant"] / "1" / changed).stat().st_size == v["model_bytes"]
        assert v["accuracy"]["samples"] == 32 and v["passes"] == (v["problem"] is None)
    assert json.loads((out / "optimize.json").read_text()) == doc


@pytest.fixture(scope="module")
def tiny_fp16(tiny_model, tmp_path_factory):
    """tiny as a TFLite float16 variant: model.tflite beside a copy of the SavedModel."""
    return build_variant(tiny_model, "tflite_fp16", tmp_path_factory.mktemp("variant") / "tiny")


@pytest.mark.slow
def test_the_local_server_serves_model_tflite_under_prefer_tflite_model_over_rest_and_grpc(
    start_server, tiny_model, tiny_fp16
):
    import grpc
    import requests
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from autotune.models.resolve import resolve_model

    variant = resolve_model(str(tiny_fp16.base))
    server = start_server(variant, "--prefer_tflite_model=true", "--num_tflite_pools=2")
    log = server.log_path.read_text()
    assert "from model.tflite (2 interpreters)" in log
    inputs = guard_inputs(tiny_model, None, 8)[0]["inputs"]
    want = savedmodel_outputs(tiny_model, [{"inputs": inputs}])[0]
    rest = f"http://127.0.0.1:{server.rest_port}/v1/models/{variant.name}"
    answer = requests.post(rest + ":predict", json={"instances": inputs.tolist()}, timeout=30).json()
    got = np.array([p["scores"] for p in answer["predictions"]])
    np.testing.assert_allclose(got, want["scores"], atol=1e-3)
    assert [p["classes"] for p in answer["predictions"]] == want["classes"].tolist()

    request = predict_pb2.PredictRequest()
    request.model_spec.name = variant.name
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(inputs))
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    np.testing.assert_allclose(tf.make_ndarray(reply.outputs["scores"]), want["scores"], atol=1e-3)
    metadata = requests.get(rest + "/metadata", timeout=10).json()
    assert list(metadata["metadata"]["signature_def"]["signature_def"]) == ["serving_default"]


def test_without_prefer_tflite_model_the_graph_is_served_and_model_tflite_ignored(start_server, tiny_fp16):
    from autotune.models.resolve import resolve_model

    server = start_server(resolve_model(str(tiny_fp16.base)))
    assert "model.tflite" not in server.log_path.read_text()


def test_a_tflite_variant_is_served_behind_the_batch_op(start_server, tiny_fp16, tmp_path):
    import concurrent.futures

    import requests

    from autotune.models.resolve import resolve_model

    variant = resolve_model(str(tiny_fp16.base))
    batching = tmp_path / "batching.txt"
    batching.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 20000 }\n")
    server = start_server(
        variant, "--prefer_tflite_model", "--enable_batching", f"--batching_parameters_file={batching}"
    )
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/{variant.name}:predict"

    def one(i: int) -> int:
        body = {"instances": [[float(i)] * 32]}
        return len(requests.post(url, json=body, timeout=30).json()["predictions"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(16))) == [1] * 16


@pytest.mark.slow
def test_a_trial_of_a_variant_serves_its_model_tflite_and_records_its_accuracy(tiny_model):
    from autotune.knobs import parse_assignments
    from autotune.measure import MeasureSettings, run_trial
    from autotune.servers.backends import local_backend
    from autotune.tuner import constraint_values

    settings = MeasureSettings(concurrency=2, window_s=0.3, warmup_s=0.1, max_windows=4, measure_unloaded=False)
    config = parse_assignments(["model_variant=tflite_fp16"])
    result = run_trial(tiny_model, config, settings, local_backend())
    assert result.ok, result.failure_message
    assert "--prefer_tflite_model=true" in result.argv
    assert "from model.tflite" in (result.server_log_tail or "")
    accuracy = result.metrics["accuracy"]
    assert accuracy["variant"] == "tflite_fp16" and accuracy["samples"] == 128
    assert accuracy["top1_agreement"] == 1.0 and accuracy["problem"] is None
    assert constraint_values(result.metrics, None, 0.01, 0.95)["accuracy_guard"] == 0.0

    # Checked once per variant: a stricter guard reads the stored figures back and judges them again.
    strict = MeasureSettings(**{**settings.__dict__, "max_abs_error": 1e-9})
    again = run_trial(tiny_model, config, strict, local_backend())
    assert again.metrics["accuracy"]["max_abs_error"] == accuracy["max_abs_error"]
    assert again.metrics["accuracy"]["problem"].startswith("max abs error")
    assert constraint_values(again.metrics, None, 0.01, 0.95)["accuracy_guard"] == 1.0
    assert again.metrics["throughput_rps"] > 0  # measured all the same: report shows speed against accuracy


@pytest.mark.slow
def test_a_model_tflite_cannot_convert_fails_its_trial_with_one_line_and_leaves_no_half_build(resnet_model):
    from autotune.knobs import parse_assignments
    from autotune.measure import MeasureSettings, run_trial
    from autotune.models.optimize import _variants_root
    from autotune.servers.backends import local_backend

    result = run_trial(
        resnet_model, parse_assignments(["model_variant=tflite_fp16"]), MeasureSettings(), local_backend()
    )
    assert result.failure_reason == "variant_failed" and result.argv == []
    assert result.failure_message.startswith(
        "resnet: cannot become tflite_fp16: TFLite has no kernel for tf.DecodeJpeg"
    )
    assert "\n" not in result.failure_message
    # The converter's verdict is kept, so the job's next trial of it fails at once; no half-built variant stays.
    kept = sorted(p.name for p in _variants_root(resnet_model).iterdir() if p.name.startswith((".", "tflite_fp16")))
    assert kept == ["tflite_fp16.failed", "tflite_fp16.lock"], kept


VARIANT_STUDY = """
model = "tiny"
backend = "local"
seed = 1
sampler = "grid"

[space.model_variant]
choices = ["savedmodel", "tflite_fp16", "xla"]
[space.enable_batching]
value = false
[space.intra_op_threads]
value = 0
[space.inter_op_threads]
value = 0

[budget]
trials = 3
confirm_repeats = 0

[slo]
latency_p99_ms = 5000
min_top1_agreement = 0.98

[load]            # conftest's SHORT: the trials need to finish, not to agree window on window
concurrency = 2
window_s = 0.2
warmup_s = 0.2
max_windows = 6
tolerance = 3
p99_tolerance = 3
"""


@pytest.mark.slow
def test_a_job_searches_the_variant_beside_the_server_knobs_and_reports_speed_against_accuracy(tmp_path):
    from autotune.fingerprint import fingerprint, host_info
    from autotune.store import Store
    from autotune.tuner import constraint_values

    study = tmp_path / "variants.toml"
    study.write_text(VARIANT_STUDY)
    db = f"sqlite:///{tmp_path / 'v.db'}"
    run = autotune("start", "--study", str(study), "--foreground", "--json", db=db, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "seeds:" not in run.stderr  # the grid sampler takes no first configs, so the job does not profile
    job = Store(db).pick_job("tiny", None, fingerprint(host_info()))
    assert job.settings["min_top1_agreement"] == 0.98
    by_variant = {t.config.get("model_variant", "savedmodel"): t for t in job.trials if t.state == "complete"}
    assert set(by_variant) == {"savedmodel", "tflite_fp16", "xla"}
    fp16, xla = by_variant["tflite_fp16"], by_variant["xla"]
    assert fp16.metrics["accuracy"]["top1_agreement"] == 1.0 and "--prefer_tflite_model=true" in fp16.argv
    assert xla.metrics["accuracy"]["max_abs_error"] < 1e-5 and "--xla_cpu_compilation_enabled=true" in xla.argv
    assert "accuracy" not in by_variant["savedmodel"].metrics
    for trial in (fp16, xla):  # within the guard: feasible as far as accuracy goes
        assert constraint_values(trial.metrics, None, 0.01, 0.95)["accuracy_guard"] == 0.0

    report = autotune("report", "--model", "tiny", "--out", str(tmp_path / "report"), db=db)
    assert report.returncode == 0, report.stderr
    variants = json.loads((tmp_path / "report" / "summary.json").read_text())["variants"]
    guards = {v["variant"]: v["guard"] for v in variants}
    assert guards == {"savedmodel": "reference", "tflite_fp16": "passes", "xla": "passes"}
    assert all(v["best_throughput_rps"] > 0 and v["median_load_time_s"] > 0 for v in variants)
    assert "Model variants: speed against accuracy" in (tmp_path / "report" / "report.html").read_text()


def _export_variant(tmp_path, tiny_model, variant: str) -> tuple[dict, Path]:
    """Export a stored job's trial that served VARIANT (no server runs: the variant is built and checked here)."""
    from autotune.fingerprint import fingerprint, host_info
    from autotune.states import JobState
    from autotune.store import Store
    from tests.stored_jobs import add_job, add_trial

    db = f"sqlite:///{tmp_path / 'export.db'}"
    store = Store(db)
    job = add_job(store, store.model(tiny_model), fingerprint(host_info()), JobState.running)
    add_trial(store, job, 0, rps=100.0, p99=5.0)
    add_trial(store, job, 1, rps=150.0, p99=4.0, config={"enable_batching": False, "model_variant": variant})
    store.finish_job(job, JobState.done)
    out = tmp_path / f"deploy-{variant}"
    done = autotune("export", "--model", "tiny", "--out", str(out), "--pick", "trial 1", "--json", db=db)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout), out


def test_an_export_of_a_tflite_variant_ships_model_tflite_mounted_into_the_version_directory(tmp_path, tiny_model):
    from autotune.servers.local.flags import parse_flags

    doc, out = _export_variant(tmp_path, tiny_model, "tflite_fp16")
    assert doc["config"]["model_variant"] == "tflite_fp16" and "top-1 agreement 1.000" in doc["model_variant"]
    assert (out / TFLITE_FILE).read_bytes()[4:8] == b"TFL3"  # a TFLite flatbuffer
    flags = parse_flags((out / "tfserving.args").read_text().split())
    assert flags.prefer_tflite_model and flags.model_base_path == str(tiny_model.base_path)
    assert f"{out / TFLITE_FILE}:/models/tiny/1/{TFLITE_FILE}:ro" in (out / "docker-run.sh").read_text()


def test_an_export_of_the_xla_variant_ships_its_own_savedmodel(tmp_path, tiny_model):
    from autotune.servers.local.flags import parse_flags

    doc, out = _export_variant(tmp_path, tiny_model, "xla")
    assert "the XLA-compiled SavedModel" in doc["model_variant"]
    flags = parse_flags((out / "tfserving.args").read_text().split())
    assert flags.xla_cpu_compilation_enabled and not flags.prefer_tflite_model
    assert flags.model_base_path == str(out / "model") and (out / "model" / "1" / "saved_model.pb").is_file()
    assert (out / "model" / "1" / "assets.extra" / "tf_serving_warmup_requests").is_file()
    assert f"{out / 'model'}:/models/tiny:ro" in (out / "docker-run.sh").read_text()


@pytest.mark.slow
def test_mobilenet_float_becomes_variants_the_local_server_serves_over_grpc(start_server, tmp_path):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from autotune.models.optimize import checked_variant
    from autotune.models.resolve import resolve_model

    model = resolve_model("mobilenet_float")
    inputs = guard_inputs(model, None, 4)[0]["images"]
    want = savedmodel_outputs(model, [{"images": inputs}])[0]
    assert want["probabilities"].std(axis=1).min() > 0  # live batch norm: answers depend on the input
    for name in ("tflite_fp16", "tflite_int8"):
        checked = checked_variant(model, name, samples=16)
        assert checked.accuracy.samples == 16 and checked.accuracy.top1_agreement is not None
        variant = resolve_model(str(checked.variant.base))
        server = start_server(variant, "--prefer_tflite_model")
        request = predict_pb2.PredictRequest()
        request.model_spec.name = variant.name
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(inputs))
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
        got = tf.make_ndarray(reply.outputs["probabilities"])
        assert got.shape == (4, 1000)
        np.testing.assert_allclose(got, want["probabilities"], atol=checked.accuracy.max_abs_error * 1.01 + 1e-6)
        server.stop()


@pytest.mark.slow
def test_an_xla_variant_is_the_savedmodel_compiled_and_the_local_server_serves_it(start_server, tiny_model, tmp_path):
    import requests

    from autotune.models.resolve import resolve_model

    built = build_variant(tiny_model, "xla", tmp_path / "xla")
    variant = resolve_model(str(built.base))
    assert variant.signature == tiny_model.signature  # the same signature, compiled
    inputs = guard_inputs(tiny_model, None, 8)[0]["inputs"]
    want = savedmodel_outputs(tiny_model, [{"inputs": inputs}])[0]
    server = start_server(variant, "--xla_cpu_compilation_enabled=true")
    assert "XLA:CPU JIT enabled" in server.log_path.read_text()
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/{variant.name}:predict"
    answer = requests.post(url, json={"instances": inputs.tolist()}, timeout=60).json()
    np.testing.assert_allclose([p["scores"] for p in answer["predictions"]], want["scores"], atol=1e-5)


def test_a_model_with_string_inputs_cannot_become_xla(resnet_model, tmp_path):
    with pytest.raises(AutotuneError, match=r"^resnet: cannot become xla: XLA takes no string inputs \(image_bytes\)$"):
        build_variant(resnet_model, "xla", tmp_path / "xla")
