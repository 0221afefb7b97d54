"""Several models on one server: the study's mix, the stand-in serving them from a models config with a batch
queue each, and the export TF Serving reads."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from autotune.errors import AutotuneError
from autotune.multimodel import mix_sequence, mixed_payloads
from autotune.spec import load_study
from autotune.traffic.payload import Payload
from tests.conftest import autotune

STUDY = """
model = "tiny"
backend = "local"
seed = 1

[mix]            # one server, three tiny requests for each MobileNetV2 one
tiny = 3
mobilenet = 1

[space.enable_batching]
value = true

[budget]
trials = 2
confirm_repeats = 0

[slo]
latency_p99_ms = 5000

[load]            # the front holds only stable trials: any windows holding 200 requests count as stable here
concurrency = 2
window_s = 0.5
warmup_s = 0.3
max_windows = 12
tolerance = 3
p99_tolerance = 3
"""


def test_the_mix_sends_each_model_its_share_evenly_spread():
    sequence = mix_sequence({"a": 3, "b": 1}, 100)
    assert Counter(sequence) == {"a": 75, "b": 25}
    assert all(sequence[i : i + 4].count("b") == 1 for i in range(0, 100, 4))  # spread, not in runs
    by_model = {"a": [Payload(b"a1", b""), Payload(b"a2", b"")], "b": [Payload(b"b", b"")]}
    sent = [p.rest_body for p in mixed_payloads(by_model, {"a": 1, "b": 1})]
    assert Counter(sent) == {b"b": 50, b"a1": 25, b"a2": 25}


@pytest.mark.parametrize(
    ("mix", "message"),
    [
        ("[mix]\nmobilenet = 1\nresnet = 1\n", "must give the study's model 'tiny' its share too"),
        ("[mix]\ntiny = 1\n", "names one model"),
        ("[mix]\ntiny = 1\nmobilenet = 0\n", "mix.mobilenet: must be > 0"),
    ],
)
def test_a_bad_mix_is_a_one_line_error(tmp_path, mix, message):
    path = tmp_path / "s.toml"
    path.write_text('model = "tiny"\n' + mix)
    with pytest.raises(AutotuneError, match=message):
        load_study(path)


@pytest.mark.slow
def test_a_two_model_study_is_tuned_on_one_server_and_exported_as_one_models_config(tmp_path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    from autotune.servers.local.flags import parse_flags

    study = tmp_path / "two.toml"
    study.write_text(STUDY)
    db = f"sqlite:///{tmp_path / 'two.db'}"
    run = autotune("start", "--study", str(study), "--foreground", "--json", db=db, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    # The performance model predicts a server of one model: a mix takes the batching guide's first configs.
    assert "seeds: the batching guide's, not the model's: the model predicts a server of one model" in run.stderr
    front = json.loads(run.stdout)
    assert front and all(row["metrics"]["error_rate"] == 0 for row in front)

    out = tmp_path / "deploy"
    done = autotune("export", "--model", "tiny", "--out", str(out), "--json", db=db)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert doc["mix"] == {"tiny": 3.0, "mobilenet": 1.0}
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((out / "models.config").read_text(), config)
    served = {c.name: c.base_path for c in config.model_config_list.config}
    assert set(served) == {"tiny", "mobilenet"} and all(
        c.model_platform == "tensorflow" for c in config.model_config_list.config
    )
    flags = parse_flags((out / "tfserving.args").read_text().split())  # the stand-in's parser: TF Serving's flags
    assert flags.model_config_file == str(out / "models.config") and flags.enable_per_model_batching_parameters
    for name in served:  # a batch queue of its own, and a warm-up file, for each model
        assert (out / name / "batching_params.pbtxt").read_text() == (out / "batching_parameters.txt").read_text()
        assert (out / name / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0


def test_docker_cannot_take_a_study_of_several_models(tmp_path):
    from pathlib import Path

    from autotune.cpulimit import plan_cpus
    from autotune.knobs import ServingConfig
    from autotune.servers.argv import ServerPaths
    from autotune.servers.backends import MULTI_MODEL_DOCKER, DockerBackend

    paths = ServerPaths("tiny", Path("/m/tiny"), 1, 2, model_config_file=tmp_path / "models.config")
    with pytest.raises(AutotuneError, match="a study of several models runs on the local or tfserving backend"):
        DockerBackend().launch(ServingConfig(), paths, tmp_path, plan_cpus(0, [0, 1]))
    assert "docker" in MULTI_MODEL_DOCKER
