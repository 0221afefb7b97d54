"""`autotune profile` and `autotune predict` as a user runs them: real measurement, the cache, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autotune.fingerprint import fingerprint, host_info
from tests.conftest import autotune
from tests.test_perfmodel import synthetic_profile


def _profile_file(tmp_path: Path, host: str) -> Path:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(synthetic_profile(host_fingerprint=host).to_json()))
    return path


def _one_line_error(result: object) -> str:
    assert result.returncode == 1, result.stdout + result.stderr  # type: ignore[attr-defined]
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]
    return lines[0]


def test_predict_answers_from_a_profile_file_of_this_host(tmp_path: Path) -> None:
    path = _profile_file(tmp_path, fingerprint(host_info()))
    r = autotune(
        "predict",
        "--model",
        "tiny",
        "--profile",
        str(path),
        "--set",
        "intra_op_threads=1",
        "--concurrency",
        "4",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["predicted"] is True and doc["concurrency"] == 4
    assert doc["throughput_rps"] > 0 and doc["latency_p99_ms"] >= doc["latency_p50_ms"]


def test_predict_ramps_the_load_when_none_is_given(tmp_path: Path) -> None:
    path = _profile_file(tmp_path, fingerprint(host_info()))
    r = autotune("predict", "--model", "tiny", "--profile", str(path), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["concurrency"] >= 2  # one client leaves a two-core server idle half the time


def test_predict_refuses_a_profile_from_another_host_unless_told(tmp_path: Path) -> None:
    path = _profile_file(tmp_path, "another-host")
    line = _one_line_error(autotune("predict", "--model", "tiny", "--profile", str(path), "--concurrency", "2"))
    assert "another host" in line
    ok = autotune("predict", "--model", "tiny", "--profile", str(path), "--concurrency", "2", "--any-host")
    assert ok.returncode == 0, ok.stderr


def test_predict_input_errors_are_one_line(tmp_path: Path) -> None:
    path = _profile_file(tmp_path, fingerprint(host_info()))
    base = ["predict", "--model", "tiny", "--profile", str(path)]
    assert "unknown knob" in _one_line_error(autotune(*base, "--set", "bogus=1"))
    assert "not both" in _one_line_error(autotune(*base, "--concurrency", "2", "--rate", "5"))
    assert "more than the host" in _one_line_error(autotune(*base, "--set", "cpus=8", "--concurrency", "2"))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert "cannot read" in _one_line_error(autotune("predict", "--model", "tiny", "--profile", str(garbage)))
    assert "neither a built-in" in _one_line_error(autotune("profile", "--model", str(tmp_path / "nope")))


def test_profiling_a_model_that_does_not_load_says_what_failed_in_one_line(tmp_path: Path, tiny_model) -> None:
    import shutil

    from autotune.perfmodel.probe import _servable

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model.base_path, broken)
    shutil.rmtree(broken / "1" / "variables")  # the graph reads fine, the weights are gone
    with pytest.raises(SystemExit) as ended:  # the probe's last words, which the profile prints as its error
        _servable(broken, batching=None)
    line = str(ended.value.code)
    # What failed, not the hint about devices that ends TF's message.
    assert "\n" not in line and "failed to load model" in line and "variables" in line, line


# A profile measured end to end (the session's) and one probe of the batch op.
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_profile_stored_before_the_batch_op_was_measured_gains_it_and_keeps_the_rest(
    tmp_path: Path, tiny_model, tiny_profile, plain_env
) -> None:
    from autotune.store.profiles import Profiles
    from tests.conftest import _profile_key

    older = {k: v for k, v in tiny_profile.items() if not k.startswith("batch_op")}
    Profiles(plain_env["AUTOTUNE_DB_URL"]).put(*_profile_key(tiny_model), "tiny", older)
    r = autotune("profile", "--model", "tiny", "--budget-s", "1", "--json", env=plain_env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["cached"] is False and doc["batch_op_cpu_ms"] > 0
    assert doc["points"] == older["points"] and doc["transport"] == older["transport"]  # nothing else measured again


# Two profiles and a variant's build, ladder and transports: about 25 s here (2026-12-06), more on a slow host.
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_profile_measures_once_then_predict_reads_the_cache(tmp_path: Path, tiny_model) -> None:
    env = {"AUTOTUNE_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "models").symlink_to(tiny_model.base_path.parent)  # built once for the session
    missing = autotune("predict", "--model", "tiny", "--concurrency", "2", env=env)
    assert "run autotune profile" in _one_line_error(missing)
    args = ["profile", "--model", "tiny", "--max-batch", "4", "--budget-s", "1", "--transport", "grpc", "--json"]
    first = autotune(*args, env=env)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["cached"] is False
    assert {p["batch"] for p in doc["points"]} == {1, 2, 3, 4}
    assert {p["threads"] for p in doc["points"]} >= {1}
    assert all(p["wall_ms"] > 0 and p["repeats"] >= 3 for p in doc["points"])
    assert [t["protocol"] for t in doc["transport"]] == ["grpc"]
    # A request's handling is never free. Read where calls do not spin (one call at a time, one thread), it does
    # not vanish into the spinning of TF's default pools, as it did (clamped to 0) on 16 cores and on 2.
    assert doc["transport"][0]["server_cpu_ms"] > 0
    # Through the stand-in's batch op each request is a call of its own: it costs more than its share of one call of
    # the whole batch, and the median comes with its interval.
    low, high = doc["batch_op_ci95_ms"]
    assert 0 < doc["batch_op_cpu_ms"] and low <= doc["batch_op_cpu_ms"] <= high
    again = autotune(*args, env=env)
    assert json.loads(again.stdout)["cached"] is True
    grown = autotune(*args, "--variants", "tflite_fp16", env=env)  # the cached profile gains the variant it lacks
    assert grown.returncode == 0, grown.stderr
    doc = json.loads(grown.stdout)
    assert doc["cached"] is False and doc["accuracy"]["tflite_fp16"]["samples"] > 0
    tflite = [p for p in doc["points"] if p["variant"] == "tflite_fp16"]
    assert {p["batch"] for p in tflite} == {1, 2, 3, 4} and {p["threads"] for p in tflite} == {
        1
    }  # TFLite's own threads
    assert len(doc["points"]) == len(json.loads(first.stdout)["points"]) + len(tflite)  # the rest kept as measured
    # Its own transport, measured while it serves (a TFLite interpreter spins no TF pools around its call).
    served = [(t["protocol"], t["variant"]) for t in doc["transport"]]
    assert served == [("grpc", "savedmodel"), ("grpc", "tflite_fp16")]
    variant = autotune(
        "predict",
        "--model",
        "tiny",
        "--protocol",
        "grpc",
        "--concurrency",
        "2",
        "--set",
        "model_variant=tflite_fp16",
        "--json",
        env=env,
    )
    assert variant.returncode == 0, variant.stderr
    assert json.loads(variant.stdout)["throughput_rps"] > 0
    pred = autotune("predict", "--model", "tiny", "--protocol", "grpc", "--concurrency", "2", "--json", env=env)
    assert pred.returncode == 0, pred.stderr
    assert json.loads(pred.stdout)["throughput_rps"] > 0
    rest = autotune("predict", "--model", "tiny", "--protocol", "rest", "--concurrency", "2", env=env)
    assert "no rest transport" in _one_line_error(rest)
