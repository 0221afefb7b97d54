"""autotune-model-server: load a SavedModel and serve TF Serving's REST and gRPC APIs.

A stand-in for tensorflow_model_server on hosts without it, for measurement.
Exits non-zero with one line on stderr when flags, files or the model are bad.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from autotune.errors import AutotuneError
from autotune.servers.local.flags import ServerFlags, parse_flags


def _log(message: str) -> None:
    print(f"autotune-model-server: {message}", file=sys.stderr, flush=True)


def _read_text_proto(message: str, path: Path) -> Any:
    """Read and parse a config file; unreadable or malformed files are one-line errors."""
    from autotune.protos import parse_text

    try:
        text = path.read_text()
    except OSError as exc:
        raise AutotuneError(f"cannot read {message} file {path}: {exc.strerror}") from None
    return parse_text(message, text, str(path))


def _batching(flags: ServerFlags) -> object | None:
    """The batch op's options from the global batching file (None when batching is off)."""
    from autotune.protos import message_class

    if not flags.enable_batching:
        return None
    path = Path(flags.batching_parameters_file)
    # TF Serving with --enable_batching and no file batches with every field unset (server.cc BuildAndStart).
    if flags.batching_parameters_file:
        return _batching_options(_read_text_proto("BatchingParameters", path), path)
    return _batching_options(message_class("BatchingParameters")(), path)


def _model_batching(version_dir: Path) -> object | None:
    """A model's own batching (--enable_per_model_batching_parameters): its batching_params.pbtxt, else none."""
    from autotune.servers.argv import PER_MODEL_BATCHING_FILE

    path = version_dir / PER_MODEL_BATCHING_FILE
    if not path.is_file():
        return None
    return _batching_options(_read_text_proto("BatchingParameters", path), path)


def _batching_options(msg: Any, path: Path) -> object:
    """The batch op's options: the file's fields, TF Serving's defaults for those it leaves unset."""
    from autotune.knobs import TFSERVING_BATCHING_DEFAULTS
    from autotune.servers.local.servable import BatchingOptions

    d = TFSERVING_BATCHING_DEFAULTS

    def get(field: str, default: int) -> int:
        return getattr(msg, field).value if msg.HasField(field) else default

    opts = BatchingOptions(
        max_batch_size=get("max_batch_size", d.max_batch_size),
        batch_timeout_micros=get("batch_timeout_micros", d.batch_timeout_micros),
        num_batch_threads=get("num_batch_threads", d.num_batch_threads),
        max_enqueued_batches=get("max_enqueued_batches", d.max_enqueued_batches),
        allowed_batch_sizes=tuple(msg.allowed_batch_sizes),
    )
    if opts.max_batch_size < 1 or opts.num_batch_threads < 1 or opts.max_enqueued_batches < 1:
        raise AutotuneError(f"{path}: max_batch_size, num_batch_threads and max_enqueued_batches must be >= 1")
    sizes = list(opts.allowed_batch_sizes)
    if sizes and (sizes != sorted(set(sizes)) or sizes[-1] != opts.max_batch_size):
        raise AutotuneError(f"{path}: allowed_batch_sizes must increase and end at max_batch_size")
    return opts


def _monitoring_path(flags: ServerFlags) -> str | None:
    if not flags.monitoring_config_file:
        return None
    msg = _read_text_proto("MonitoringConfig", Path(flags.monitoring_config_file))
    if not msg.prometheus_config.enable:
        return None
    return msg.prometheus_config.path or "/monitoring/prometheus/metrics"


def _configure_tensorflow(flags: ServerFlags) -> None:
    from autotune.tfimport import import_tensorflow

    # Serving needs no Keras: skipping its import is a quarter of the server's start-up.
    tf = import_tensorflow(keras=False)

    # Threading must be set before the first op runs, as TF Serving sets its session options.
    tf.config.threading.set_intra_op_parallelism_threads(flags.tensorflow_intra_op_parallelism)
    tf.config.threading.set_inter_op_parallelism_threads(flags.tensorflow_inter_op_parallelism)
    if flags.mixed_precision == "bfloat16":
        # What TF Serving sets in the session's RewriterConfig; here the process's grappler options.
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
        _log("running inference with bfloat16 auto mixed precision")
    elif flags.mixed_precision:
        _log(f"{flags.mixed_precision} auto mixed precision is not supported. Valid option: bfloat16")
    if flags.xla_cpu_compilation_enabled:
        _log("XLA:CPU JIT enabled")
    fraction = flags.per_process_gpu_memory_fraction
    gpus = tf.config.list_physical_devices("GPU")
    if fraction > 0 and not gpus:
        _log("no GPU visible; --per_process_gpu_memory_fraction ignored")
    elif fraction > 0:
        from autotune.gpu import total_memory_mb

        for index, gpu in enumerate(gpus):
            total = total_memory_mb(index)
            if total is None:
                raise AutotuneError("cannot read GPU memory size through NVML to apply the memory fraction")
            limit = int(total * fraction)
            tf.config.set_logical_device_configuration(gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)])
            _log(f"GPU {index}: memory limited to {limit} MiB ({fraction:.2f} of {total} MiB)")


def _load(name: str, base: Path, flags: ServerFlags, batching: Any, metrics: Any) -> Any:
    """Load model NAME from BASE with its batching, and replay its warm-up file."""
    from autotune.models.resolve import latest_version
    from autotune.servers.local.servable import Servable, load_failure

    started = time.monotonic()
    try:
        if batching is not None and flags.enable_per_model_batching_parameters:
            batching = _model_batching(base / str(latest_version(base)))
        observer = metrics.batch_observer(name) if metrics and batching else None
        pools = flags.num_tflite_pools if flags.prefer_tflite_model else None
        servable = Servable(base, batching, observer, name, pools)
    except Exception as exc:  # TF raises many types for corrupt or incompatible models
        raise load_failure(base, exc) from None
    _log(
        f"loaded {name} version {servable.version}"
        + (f" from model.tflite ({flags.num_tflite_pools} interpreters)" if servable.format == "tflite" else "")
        + f" in {time.monotonic() - started:.2f}s"
        + (" with batching" if batching else "")
    )
    if flags.enable_model_warmup:
        warmed = time.monotonic()
        records = _replay_warmup(servable, base / str(servable.version), flags.num_request_iterations_for_warmup)
        if records:
            _log(f"warmed up {name} with {records} records in {time.monotonic() - warmed:.2f}s")
    return servable


def _replay_warmup(servable: Any, version_dir: Path, iterations: int) -> int:
    """Run the version's warm-up file through the servable before serving, as TF Serving does; return how many
    records. A warm-up request that fails fails the load, as in TF Serving."""
    from autotune.servers.argv import MAX_WARMUP_RECORDS, WARMUP_FILE
    from autotune.servers.local.servable import RequestError
    from autotune.tfrecord import read_records

    path = version_dir / WARMUP_FILE
    if not path.is_file():
        return 0
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    records = list(read_records(path.read_bytes(), str(path)))
    if len(records) > MAX_WARMUP_RECORDS:
        raise AutotuneError(f"{path}: Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS})")
    for index, record in enumerate(records, start=1):
        try:
            log = prediction_log_pb2.PredictionLog.FromString(record)
        except Exception:  # protobuf raises DecodeError and others for garbage
            raise AutotuneError(f"{path}: warm-up record {index} is not a PredictionLog") from None
        kind = log.WhichOneof("log_type")
        if kind != "predict_log":
            raise AutotuneError(f"{path}: warm-up record {index} is a {kind}; the stand-in replays predict_log only")
        request = log.predict_log.request
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        for _ in range(max(1, iterations)):
            try:
                servable.predict(request.model_spec.signature_name, inputs)
            except RequestError as exc:
                raise AutotuneError(f"{path}: warm-up record {index} failed: {exc}") from None
    return len(records)


def _models(flags: ServerFlags) -> dict[str, Path]:
    """The models to serve, by name: --model_name/--model_base_path, or every entry of --model_config_file."""
    if not flags.model_config_file:
        models = {flags.model_name: Path(flags.model_base_path)}
    else:
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2

        path = Path(flags.model_config_file)
        msg = model_server_config_pb2.ModelServerConfig()
        try:
            text_format.Parse(path.read_text(), msg)
        except OSError as exc:
            raise AutotuneError(f"cannot read model config file {path}: {exc.strerror}") from None
        except text_format.ParseError as exc:
            raise AutotuneError(f"{path}: not a valid ModelServerConfig text proto: {exc}") from None
        entries = msg.model_config_list.config
        if not entries:
            raise AutotuneError(f"{path}: no models in model_config_list")
        models = {}
        for entry in entries:
            if entry.name in models:
                raise AutotuneError(f"{path}: model {entry.name!r} is listed twice")
            if entry.model_platform not in ("", "tensorflow"):
                raise AutotuneError(f"{path}: {entry.name}: platform {entry.model_platform!r} is not served here")
            models[entry.name] = Path(entry.base_path)
    for name, base in models.items():
        if not base.is_dir():
            raise AutotuneError(f"model {name}: base path {base} is not a directory")
    return models


def serve(flags: ServerFlags) -> int:
    """Load the models, start both APIs, block until SIGTERM/SIGINT."""
    models = _models(flags)
    batching = _batching(flags)
    metrics_path = _monitoring_path(flags)
    _configure_tensorflow(flags)

    from autotune.servers.local.grpc_api import serve_grpc
    from autotune.servers.local.metrics import ServerMetrics
    from autotune.servers.local.rest import RestContext, serve_rest

    metrics = ServerMetrics() if metrics_path else None
    servables = {name: _load(name, base, flags, batching, metrics) for name, base in models.items()}

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        grpc_server = serve_grpc(servables, flags.port, flags.grpc_max_threads, metrics, flags.grpc_socket_path)
    except OSError as exc:
        raise AutotuneError(str(exc)) from None
    rest_server = None
    try:
        if flags.rest_api_port:
            ctx = RestContext(servables, flags.rest_api_num_threads, metrics, metrics_path or "")
            try:
                rest_server = serve_rest(ctx, flags.rest_api_port)
            except OSError as exc:
                raise AutotuneError(f"REST port {flags.rest_api_port} on 127.0.0.1 is busy ({exc.strerror})") from None
        grpc_at = [f"127.0.0.1:{flags.port}"] if flags.port else []
        grpc_at += [f"unix:{flags.grpc_socket_path}"] if flags.grpc_socket_path else []
        _log(
            f"serving gRPC on {' and '.join(grpc_at)}"
            + (f", REST on 127.0.0.1:{flags.rest_api_port}" if rest_server else "")
            + (" with batching" if batching else "")
        )
        stop.wait()
    finally:
        if rest_server is not None:
            rest_server.shutdown()
        grpc_server.stop(grace=1.0).wait(timeout=3.0)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the autotune-model-server console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    flags = parse_flags(sys.argv[1:] if argv is None else argv)
    try:
        code = serve(flags)
    except (AutotuneError, OSError) as exc:
        _log(f"error: {exc}")
        code = 1
    # Leave without interpreter teardown: TF and gRPC worker threads must not be able to keep
    # a stopped server alive (a SIGTERM'd server that lingers is an orphan for the trial runner).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
