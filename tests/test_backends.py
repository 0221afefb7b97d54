"""Backends: the real binary (argv, UNIX-socket gRPC), its Docker image, dry runs, server metrics."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from autotune.cpulimit import plan_cpus
from autotune.errors import AutotuneError
from autotune.knobs import parse_assignments
from autotune.protos import parse_text
from autotune.servers.argv import ServerPaths
from autotune.servers.backends import resolve_auto, resolve_backend
from autotune.servers.docker import LABEL
from autotune.servers.local.flags import parse_flags
from tests.conftest import ANY_SPREAD, autotune
from tests.test_argv import REAL_FLAGS, flag_names

CONFIG = parse_assignments(["max_batch_size=8", "intra_op_threads=2"])
PATHS = ServerPaths("m", Path("/srv/models/m"), 40001, 40002, Path("/w/batching_parameters.txt"), None)
ALL_CORES = plan_cpus(0, [0, 1])


def stand_in_binary(tmp_path: Path) -> Path:
    """A `tensorflow_model_server` on PATH that is autotune-model-server (the real one is not installable here)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "tensorflow_model_server"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m autotune.servers.local "$@"\n')
    script.chmod(0o755)
    return bindir


def test_tfserving_backend_serves_grpc_on_a_unix_socket_not_a_tcp_port(tmp_path):
    backend = resolve_backend("tfserving", server_binary=str(stand_in_binary(tmp_path) / "tensorflow_model_server"))
    launch = backend.launch(CONFIG, PATHS, tmp_path, ALL_CORES)
    flags = launch.argv[1:]
    assert "--port=0" in flags and f"--grpc_socket_path={tmp_path / 'grpc.sock'}" in flags
    assert launch.grpc_target == f"unix:{tmp_path / 'grpc.sock'}"
    assert flag_names(flags) <= REAL_FLAGS
    assert parse_flags(flags).grpc_socket_path == str(tmp_path / "grpc.sock")


def test_docker_command_publishes_on_loopback_only_and_mounts_read_only(tmp_path):
    backend = resolve_backend("docker", image="tensorflow/serving:2.19.0-gpu", gpus=True, check=False)
    launch = backend.launch(CONFIG, PATHS, tmp_path, ALL_CORES)
    argv = launch.argv
    assert argv[:3] == ["docker", "run", "--rm"]
    image_at = argv.index("tensorflow/serving:2.19.0-gpu")
    options, flags = argv[:image_at], argv[image_at + 1 :]
    published = [options[i + 1] for i, a in enumerate(options) if a == "-p"]
    assert published == ["127.0.0.1:40001:8500", "127.0.0.1:40002:8501"]
    mounts = [options[i + 1] for i, a in enumerate(options) if a == "-v"]
    assert mounts == ["/srv/models/m:/models/m:ro", f"{tmp_path}:/config:ro"]
    assert ["--gpus", "all"] == options[options.index("--gpus") : options.index("--gpus") + 2]
    assert LABEL in options and launch.container in options
    assert launch.cleanup == ["docker", "rm", "-f", launch.container]
    assert flag_names(flags) <= REAL_FLAGS
    assert "--batching_parameters_file=/config/batching_parameters.txt" in flags
    assert "--model_base_path=/models/m" in flags
    assert launch.grpc_target == "127.0.0.1:40001"


@pytest.mark.slow
def test_docker_without_a_daemon_is_a_clear_error(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "docker"  # the docker CLI with no daemon behind it, as on this machine
    fake.write_text(
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:/usr/bin:/bin"}
    proc = autotune("bench", "--model", "tiny", "--backend", "docker", env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "docker daemon is not reachable: Cannot connect to the Docker daemon" in proc.stderr
    with pytest.raises(AutotuneError, match="not on PATH"):
        old = os.environ["PATH"]
        os.environ["PATH"] = "/nonexistent"
        try:
            resolve_backend("docker")
        finally:
            os.environ["PATH"] = old


def test_dry_run_prints_the_exact_argv_and_writes_the_batching_file(tiny_model, tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}  # no tensorflow_model_server
    proc = autotune(
        "bench",
        "--model",
        "tiny",
        "--backend",
        "tfserving",
        "--dry-run",
        "--json",
        "--set",
        "max_batch_size=16",
        "--set",
        "allowed_batch_sizes=4,8,16",
        "--monitoring",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["backend"] == "tfserving" and doc["argv"][0] == "tensorflow_model_server"
    assert flag_names(doc["argv"][1:]) <= REAL_FLAGS
    batching = parse_text("BatchingParameters", Path(doc["files"]["batching_parameters.txt"]).read_text(), "b")
    assert batching.max_batch_size.value == 16 and list(batching.allowed_batch_sizes) == [4, 8, 16]
    assert f"--batching_parameters_file={doc['files']['batching_parameters.txt']}" in doc["argv"]
    assert parse_text(
        "MonitoringConfig", Path(doc["files"]["monitoring.config"]).read_text(), "m"
    ).prometheus_config.enable


@pytest.mark.slow
def test_tfserving_backend_measures_over_the_unix_socket_and_the_server_counts_agree(tiny_model, tmp_path):
    env = {**os.environ, "PATH": f"{stand_in_binary(tmp_path)}:{os.environ['PATH']}"}
    proc = autotune(
        "bench",
        "--model",
        "tiny",
        "--protocol",
        "grpc",
        "--concurrency",
        "4",
        "--set",
        "max_batch_size=8",
        "--monitoring",
        "--window-s",
        "0.6",
        "--warmup-s",
        "0.3",
        "--max-windows",
        "5",
        *ANY_SPREAD,  # about what the server counts, not whether its windows agree
        "--json",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "backend: tfserving (" in proc.stderr and "all interfaces" in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["backend"] == "tfserving" and "--port=0" in doc["argv"]
    level = doc["levels"][-1]["server"]
    # The server saw every request the generator counted (plus warm-up and drain).
    assert level["requests"] >= level["client_requests"] > 0
    assert doc["server_mean_batch_size"] >= 1.0 and doc["server_latency_mean_ms"] > 0


def test_each_backend_round_trips_through_the_options_a_queued_job_stores(tmp_path):
    from autotune.servers.backends import (
        DockerBackend,
        LocalBackend,
        TFServingBackend,
        backend_from_options,
    )

    binary = str(stand_in_binary(tmp_path) / "tensorflow_model_server")
    for backend in (LocalBackend(), TFServingBackend((binary,)), DockerBackend("tensorflow/serving:2.19.0-gpu", True)):
        assert backend_from_options(backend.to_options()) == backend
    # Rows written before the backend classes existed carried the same keys.
    old_row = {"name": "docker", "program": ["docker"], "image": "tensorflow/serving:2.19.0", "gpus": False}
    assert backend_from_options(old_row) == DockerBackend("tensorflow/serving:2.19.0", False)
    with pytest.raises(AutotuneError, match="does not know"):
        backend_from_options({"name": "kubernetes"})


def _fake_docker(bindir: Path, image_pulled: bool) -> None:
    """A `docker` that answers like a reachable daemon (this host has none), with or without the image."""
    bindir.mkdir()
    script = bindir / "docker"
    pulled = 0 if image_pulled else 1
    script.write_text(f'#!/bin/sh\ncase "$1" in version) echo 27.3.1;; image) exit {pulled};; esac\n')
    script.chmod(0o755)


def test_auto_prefers_the_binary_then_docker_with_its_image_then_the_stand_in_and_says_why(tmp_path, monkeypatch):
    binary_dir = stand_in_binary(tmp_path)
    monkeypatch.setenv("PATH", str(binary_dir))
    chosen, why = resolve_auto()
    assert chosen.name == "tfserving" and why.startswith("backend: tfserving (")
    assert why.endswith("/bin/tensorflow_model_server)") and len(why) <= 100

    _fake_docker(tmp_path / "with-image", image_pulled=True)
    monkeypatch.setenv("PATH", str(tmp_path / "with-image"))
    chosen, why = resolve_auto()
    assert why == "backend: docker (no tensorflow_model_server on PATH; tensorflow/serving:latest pulled)"
    assert chosen.name == "docker"

    _fake_docker(tmp_path / "no-image", image_pulled=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-image"))
    chosen, why = resolve_auto()
    assert chosen.name == "local"
    assert why == "backend: local stand-in (no tensorflow_model_server on PATH; tensorflow/serving:latest not pulled)"

    monkeypatch.setenv("PATH", "/nonexistent")
    chosen, why = resolve_auto()
    assert chosen.name == "local"
    assert why == "backend: local stand-in (no tensorflow_model_server on PATH; docker not on PATH)"


def test_backends_say_what_they_can_do_and_no_caller_decides_by_a_backends_name():
    from autotune.servers.backends import BACKENDS

    caps = {
        name: (k.enforces_cpu_quota, k.serves_models_config, k.is_stand_in, k.binds_all_interfaces)
        for name, k in BACKENDS.items()
    }
    assert caps == {
        "local": (False, True, True, False),
        "tfserving": (False, True, False, True),
        "docker": (True, False, False, False),
    }
    package = Path(__file__).resolve().parent.parent / "autotune"
    by_name = re.compile(r"""backend(\.name)?\s*(==|!=|in)\s*[("']+(local|tfserving|docker)""")
    offenders = [
        f"{path.relative_to(package)}:{n}"
        for path in package.rglob("*.py")
        if "servers" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if by_name.search(line)
    ]
    assert offenders == []
