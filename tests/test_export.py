"""Exports: files TF Serving parses, the right Pareto pick, and safe writes."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from autotune.errors import AutotuneError
from autotune.export import check_out_dir, pick_index, render, write_export
from autotune.knobs import parse_assignments
from autotune.protos import parse_text
from autotune.servers.local.flags import parse_flags

FRONT = [
    {"throughput_rps": 100.0, "latency_p99_ms": 50.0},
    {"throughput_rps": 160.0, "latency_p99_ms": 80.0},
    {"throughput_rps": 180.0, "latency_p99_ms": 300.0},
]


def test_picks():
    assert pick_index(FRONT, "max-throughput") == 2
    assert pick_index(FRONT, "min-latency") == 0
    assert pick_index(FRONT, "balanced") == 1
    with pytest.raises(AutotuneError, match="empty"):
        pick_index([], "balanced")
    with pytest.raises(AutotuneError, match="--pick"):
        pick_index(FRONT, "cheapest")


def test_the_cheapest_pick_breaks_ties_within_the_noise_by_p99():
    front = [
        {"cost_per_1k_requests": 0.0090, "latency_p99_ms": 140.0},  # the luckiest draw of one core
        {"cost_per_1k_requests": 0.0095, "latency_p99_ms": 60.0},  # the same allocation, 5% apart
        {"cost_per_1k_requests": 0.0180, "latency_p99_ms": 40.0},  # two cores
    ]
    assert pick_index(front, "min-cost") == 1
    assert pick_index([front[0], front[2]], "min-cost") == 0


def test_exported_files_parse_with_tf_servings_schemas(tmp_path):
    config = parse_assignments(["max_batch_size=16", "allowed_batch_sizes=4,8,16", "intra_op_threads=2"])
    files = render(config, "resnet", Path("/srv/models/resnet"), tmp_path / "out")
    batching = parse_text("BatchingParameters", files["batching_parameters.txt"], "b")
    assert batching.max_batch_size.value == 16 and list(batching.allowed_batch_sizes) == [4, 8, 16]
    models = text_format.Parse(files["models.config"], model_server_config_pb2.ModelServerConfig())
    (entry,) = models.model_config_list.config
    assert (entry.name, entry.base_path, entry.model_platform) == ("resnet", "/srv/models/resnet", "tensorflow")
    assert parse_text("MonitoringConfig", files["monitoring.config"], "m").prometheus_config.enable
    args = files["tfserving.args"].split()
    flags = parse_flags(args)  # every line is a flag tensorflow_model_server (and ours) accepts
    assert flags.enable_batching and flags.tensorflow_intra_op_parallelism == 2
    assert flags.batching_parameters_file == str(tmp_path / "out" / "batching_parameters.txt")
    docker = shlex.split(files["docker-run.sh"].split("exec ", 1)[1].replace("\\\n", " "))
    assert docker[:3] == ["docker", "run", "--rm"] and "tensorflow/serving:latest" in docker
    assert "127.0.0.1:8501:8501" in docker
    assert "--batching_parameters_file=/config/batching_parameters.txt" in docker


def test_no_batching_file_without_batching(tmp_path):
    files = render(parse_assignments([]), "m", Path("/m"), tmp_path)
    assert "batching_parameters.txt" not in files
    assert "--enable_batching" not in files["tfserving.args"]


def test_unsafe_targets_are_refused(tmp_path):
    model = tmp_path / "model"
    (model / "1").mkdir(parents=True)
    with pytest.raises(AutotuneError, match="refusing"):
        check_out_dir(Path("/"), model, force=True)
    with pytest.raises(AutotuneError, match="model directory"):
        check_out_dir(model / "export", model, force=True)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("user data")
    with pytest.raises(AutotuneError, match="--force"):
        check_out_dir(busy, model, force=False)
    assert (busy / "keep.txt").read_text() == "user data"


def test_write_is_atomic_and_force_replaces(tmp_path):
    target = tmp_path / "export"
    write_export({"a.txt": "1", "docker-run.sh": "#!/bin/sh\n"}, {"trial": 1}, target)
    assert json.loads((target / "autotune.json").read_text()) == {"trial": 1}
    write_export({"b.txt": "2", "docker-run.sh": "#!/bin/sh\n"}, {"trial": 2}, target)
    assert sorted(p.name for p in target.iterdir()) == ["autotune.json", "b.txt", "docker-run.sh"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no staging or backup left behind
