"""Command-line flags of autotune-model-server, named as tensorflow_model_server's."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from autotune.knobs import schedulable_cpus


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


@dataclass
class ServerFlags:
    """Parsed flags; field names are TF Serving's flag names."""

    port: int
    grpc_socket_path: str
    rest_api_port: int
    model_name: str
    model_base_path: str
    enable_batching: bool
    batching_parameters_file: str
    tensorflow_intra_op_parallelism: int
    tensorflow_inter_op_parallelism: int
    per_process_gpu_memory_fraction: float
    monitoring_config_file: str
    rest_api_num_threads: int
    grpc_max_threads: int
    rest_api_timeout_in_ms: int
    enable_model_warmup: bool
    num_request_iterations_for_warmup: int
    model_config_file: str
    enable_per_model_batching_parameters: bool
    prefer_tflite_model: bool
    num_tflite_pools: int
    num_tflite_interpreters_per_pool: int
    mixed_precision: str
    xla_cpu_compilation_enabled: bool


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, like every autotune error; exit 2 as argparse does.
        self.exit(2, f"autotune-model-server: error: {message}\n")


def parse_flags(argv: list[str]) -> ServerFlags:
    """Parse TF Serving style flags (`--name=value` or `--name value`)."""
    cpus = schedulable_cpus()
    p = _Parser(prog="autotune-model-server", description="A TF Serving compatible model server for measurement.")
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0: no TCP gRPC listener)")
    p.add_argument("--grpc_socket_path", default="", help="also (or only) serve gRPC on this UNIX socket")
    p.add_argument("--rest_api_port", type=int, default=0, help="REST port (0: REST disabled)")
    p.add_argument("--model_name", default="default")
    p.add_argument("--model_base_path", default="")
    p.add_argument("--model_config_file", default="", help="a ModelServerConfig text proto: several models")
    p.add_argument("--enable_batching", type=_bool, nargs="?", const=True, default=False)
    p.add_argument("--batching_parameters_file", default="")
    p.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0)
    p.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0)
    p.add_argument("--per_process_gpu_memory_fraction", type=float, default=0.0)
    p.add_argument("--monitoring_config_file", default="")
    # TF Serving's Server::Options::http_num_threads = 4 * port::NumSchedulableCPUs() (model_servers/server.h).
    p.add_argument("--rest_api_num_threads", type=int, default=4 * cpus, help="REST requests processed at once")
    # TF Serving's Server::Options::grpc_max_threads = 4 * port::NumSchedulableCPUs() (model_servers/server.h).
    p.add_argument("--grpc_max_threads", type=int, default=4 * cpus, help="gRPC requests processed at once")
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30000)
    # Both as TF Serving's Server::Options: warm-up on by default, each record replayed once unless > 0.
    p.add_argument("--enable_model_warmup", type=_bool, nargs="?", const=True, default=True)
    p.add_argument("--num_request_iterations_for_warmup", type=int, default=0)
    # Each model's batching from batching_params.pbtxt in its version directory (none there: no batching);
    # the global file then only sizes the shared batch threads, as in TF Serving.
    p.add_argument("--enable_per_model_batching_parameters", type=_bool, nargs="?", const=True, default=False)
    # TF Serving's Server::Options (model_servers/server.h): off; a pool of interpreters per schedulable CPU.
    p.add_argument("--prefer_tflite_model", type=_bool, nargs="?", const=True, default=False)
    p.add_argument("--num_tflite_pools", type=int, default=cpus, help="TFLite interpreters serving at once")
    p.add_argument("--num_tflite_interpreters_per_pool", type=int, default=1)
    # saved_model_bundle_factory.cc: "bfloat16" turns on oneDNN's bf16 auto mixed precision rewrite; others warn.
    p.add_argument("--mixed_precision", default="")
    # main.cc: off by default, and then a model's jit_compile functions fail; the stand-in compiles them either way.
    p.add_argument("--xla_cpu_compilation_enabled", type=_bool, nargs="?", const=True, default=False)
    ns = p.parse_args(argv)
    if bool(ns.model_base_path) == bool(ns.model_config_file):
        p.error("give exactly one of --model_base_path (one model) or --model_config_file (several)")
    for name in ("port", "rest_api_port"):
        if not 0 <= getattr(ns, name) <= 65535:
            p.error(f"--{name} must be in 0..65535")
    if ns.port == 0 and not ns.grpc_socket_path:
        p.error("--port=0 needs --grpc_socket_path (gRPC must listen somewhere)")
    if ns.num_tflite_interpreters_per_pool != 1:
        # >1 splits requests across interpreters by TF Serving's own batch scheduler: not modelled here.
        p.error("--num_tflite_interpreters_per_pool: only 1 (TF Serving's default) is served by the stand-in")
    for name in ("rest_api_num_threads", "grpc_max_threads", "num_tflite_pools"):
        if getattr(ns, name) < 1:
            p.error(f"--{name} must be >= 1")
    if not 0.0 <= ns.per_process_gpu_memory_fraction <= 1.0:
        p.error("--per_process_gpu_memory_fraction must be in 0..1")
    return ServerFlags(**vars(ns))
