"""TF Serving config protos that tensorflow-serving-api does not ship.

BatchingParameters (session_bundle_config.proto) and MonitoringConfig
(monitoring_config.proto) are built here from descriptors with TF Serving's own
package, field names and numbers, so text files round-trip exactly as the
server parses them. ModelServerConfig comes from tensorflow-serving-api itself.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, text_format
from google.protobuf.message_factory import GetMessageClass

from autotune.errors import AutotuneError
from autotune.knobs import ServingConfig
from autotune.tfwire import add_field as _field
from autotune.tfwire import new_pool

_F = descriptor_pb2.FieldDescriptorProto


@cache
def _pool() -> descriptor_pool.DescriptorPool:
    pool = new_pool()
    f = descriptor_pb2.FileDescriptorProto(
        name="autotune/tfserving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    bp = f.message_type.add(name="BatchingParameters")
    i64 = ".google.protobuf.Int64Value"
    _field(bp, "max_batch_size", 1, _F.TYPE_MESSAGE, i64)
    _field(bp, "batch_timeout_micros", 2, _F.TYPE_MESSAGE, i64)
    _field(bp, "max_enqueued_batches", 3, _F.TYPE_MESSAGE, i64)
    _field(bp, "num_batch_threads", 4, _F.TYPE_MESSAGE, i64)
    _field(bp, "thread_pool_name", 5, _F.TYPE_MESSAGE, ".google.protobuf.StringValue")
    _field(bp, "allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True)
    _field(bp, "pad_variable_length_inputs", 7, _F.TYPE_BOOL)

    pc = f.message_type.add(name="PrometheusConfig")
    _field(pc, "enable", 1, _F.TYPE_BOOL)
    _field(pc, "path", 2, _F.TYPE_STRING)
    mc = f.message_type.add(name="MonitoringConfig")
    _field(mc, "prometheus_config", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig")
    pool.Add(f)
    return pool


def message_class(name: str) -> type:
    """Return the generated class for tensorflow.serving.NAME."""
    return GetMessageClass(_pool().FindMessageTypeByName(f"tensorflow.serving.{name}"))


def batching_parameters_text(config: ServingConfig) -> str:
    """Render the batching knobs as a BatchingParameters text proto."""
    msg = message_class("BatchingParameters")()
    msg.max_batch_size.value = config.max_batch_size
    msg.batch_timeout_micros.value = config.batch_timeout_micros
    msg.max_enqueued_batches.value = config.max_enqueued_batches
    msg.num_batch_threads.value = config.num_batch_threads
    msg.allowed_batch_sizes.extend(config.allowed_batch_sizes)
    return text_format.MessageToString(msg)


def parse_text(name: str, text: str, source: str) -> Any:
    """Parse a text proto of message NAME; errors name the file and the reason."""
    msg = message_class(name)()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as exc:
        raise AutotuneError(f"{source}: not a valid {name} text proto: {exc}") from None
    return msg


def monitoring_config_text(path: str = "/monitoring/prometheus/metrics") -> str:
    """A MonitoringConfig enabling TF Serving's Prometheus endpoint at `path`."""
    msg = message_class("MonitoringConfig")()
    msg.prometheus_config.enable = True
    msg.prometheus_config.path = path
    return text_format.MessageToString(msg)
