"""Command lines for TF Serving: only real tensorflow_model_server flags."""

import sys
from pathlib import Path

from autotune.cpulimit import plan_cpus
from autotune.knobs import parse_assignments
from autotune.servers.argv import ServerPaths, tfserving_flags, write_batching_file
from autotune.servers.backends import local_backend, resolve_backend
from autotune.servers.local.flags import parse_flags

# Flags tensorflow_model_server defines (tensorflow_serving/model_servers/main.cc, 2026 master).
REAL_FLAGS = {
    "port",
    "rest_api_port",
    "model_name",
    "model_base_path",
    "enable_batching",
    "batching_parameters_file",
    "tensorflow_intra_op_parallelism",
    "tensorflow_inter_op_parallelism",
    "per_process_gpu_memory_fraction",
    "monitoring_config_file",
    "rest_api_num_threads",
    "grpc_max_threads",
    "rest_api_timeout_in_ms",
    "grpc_socket_path",
    "enable_model_warmup",
    "num_request_iterations_for_warmup",
    "model_config_file",
    "enable_per_model_batching_parameters",
    "prefer_tflite_model",
    "num_tflite_pools",
    "num_tflite_interpreters_per_pool",
    "mixed_precision",
    "xla_cpu_compilation_enabled",
}

PATHS = ServerPaths("m", Path("/models/m"), 8500, 8501, Path("/tmp/b.txt"), Path("/tmp/mon.cfg"))


def flag_names(flags):
    return {f[2:].split("=", 1)[0] for f in flags}


def test_defaults_emit_no_tuning_flags():
    flags = tfserving_flags(parse_assignments([]), PATHS)
    assert "--enable_batching=true" not in flags
    assert not any("parallelism" in f for f in flags)


def test_every_emitted_flag_is_a_real_tensorflow_model_server_flag():
    config = parse_assignments(["max_batch_size=8", "intra_op_threads=2", "inter_op_threads=1"])
    flags = tfserving_flags(config, PATHS)
    assert flag_names(flags) <= REAL_FLAGS
    assert "--batching_parameters_file=/tmp/b.txt" in flags
    assert "--tensorflow_intra_op_parallelism=2" in flags


def test_a_variant_is_served_by_tf_servings_own_flag():
    flags = tfserving_flags(parse_assignments(["model_variant=tflite_int8"]), PATHS)
    assert "--prefer_tflite_model=true" in flags and flag_names(flags) <= REAL_FLAGS
    assert parse_flags(flags).prefer_tflite_model
    assert not any("tflite" in f for f in tfserving_flags(parse_assignments([]), PATHS))


def test_an_xla_variant_enables_tf_servings_xla_jit():
    flags = tfserving_flags(parse_assignments(["model_variant=xla"]), PATHS)
    assert "--xla_cpu_compilation_enabled=true" in flags and flag_names(flags) <= REAL_FLAGS
    assert "--prefer_tflite_model=true" not in flags and parse_flags(flags).xla_cpu_compilation_enabled


def test_the_local_server_accepts_exactly_what_we_emit():
    config = parse_assignments(["max_batch_size=8", "intra_op_threads=2", "gpu_memory_fraction=0.5"])
    flags = parse_flags(tfserving_flags(config, PATHS))
    assert flags.enable_batching is True and flags.tensorflow_intra_op_parallelism == 2
    assert flags.per_process_gpu_memory_fraction == 0.5 and flags.port == 8500


def test_batching_file_only_when_batching_is_on(tmp_path):
    assert write_batching_file(parse_assignments([]), tmp_path / "b.txt") is None
    assert write_batching_file(parse_assignments(["max_batch_size=4"]), tmp_path / "b.txt").exists()


def test_auto_backend_falls_back_to_local_without_the_binary(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert resolve_backend("auto").name == "local"
    launch = local_backend().launch(parse_assignments([]), PATHS, Path("/tmp"), plan_cpus(0, [0, 1]))
    assert launch.argv[:3] == [sys.executable, "-m", "autotune.servers.local"]
    assert launch.grpc_target == "127.0.0.1:8500"
