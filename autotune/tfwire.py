"""TensorFlow's wire messages that a client needs, without importing TensorFlow.

Reading a SavedModel's signatures and building a PredictRequest are all the CLI and
the daemon need of TensorFlow, and its import costs seconds of CPU on every `bench`,
`start` and daemon start. These descriptors carry TensorFlow's own package, message
names and field numbers (tensorflow/core/protobuf/saved_model.proto, meta_graph.proto,
tensorflow/core/framework/tensor.proto, tensor_shape.proto, tensorflow_serving/apis/
predict.proto, model.proto, prediction_log.proto), for the fields we read or write only: protobuf skips the
others when parsing, and what we serialize is what TensorFlow Serving parses
(tests/test_tfwire.py checks both against the real modules).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, wrappers_pb2
from google.protobuf.message_factory import GetMessageClass

_F = descriptor_pb2.FieldDescriptorProto

# tensorflow/core/framework/types.proto DataType -> the dtype name autotune uses (numpy's, "string" for bytes).
DTYPES = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: "string",
    8: "complex64",
    9: "int64",
    10: "bool",
    14: "bfloat16",
    17: "uint16",
    18: "complex128",
    19: "float16",
    20: "resource",
    21: "variant",
    22: "uint32",
    23: "uint64",
}
DTYPE_ENUM = {name: number for number, name in DTYPES.items()}

# tensor.proto's typed value fields: (name, number, wire type).
_TYPED_VALUES = (
    ("float_val", 5, _F.TYPE_FLOAT),
    ("double_val", 6, _F.TYPE_DOUBLE),
    ("int_val", 7, _F.TYPE_INT32),
    ("int64_val", 10, _F.TYPE_INT64),
    ("bool_val", 11, _F.TYPE_BOOL),
    ("half_val", 13, _F.TYPE_INT32),
    ("uint32_val", 16, _F.TYPE_UINT32),
    ("uint64_val", 17, _F.TYPE_UINT64),
)
# The dtype -> the typed field holding its values when tensor_content is empty (tensor.proto's comments).
VALUE_FIELD = {
    "float32": "float_val",
    "float64": "double_val",
    "int32": "int_val",
    "int16": "int_val",
    "int8": "int_val",
    "uint8": "int_val",
    "uint16": "int_val",
    "int64": "int64_val",
    "bool": "bool_val",
    "float16": "half_val",
    "uint32": "uint32_val",
    "uint64": "uint64_val",
}
# prediction_log.proto's PredictionLog.log_type oneof: kind -> field number.
PREDICTION_LOG_KINDS = {
    "classify_log": 2,
    "regress_log": 3,
    "multi_inference_log": 4,
    "session_run_log": 5,
    "predict_log": 6,
    "predict_streamed_log": 7,
}


def add_field(msg: Any, name: str, number: int, ftype: int, type_name: str = "", repeated: bool = False) -> None:
    """A field of a message being described (descriptor_pb2), singular unless REPEATED."""
    f = msg.field.add(name=name, number=number, type=ftype)
    f.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        f.type_name = type_name


def _map(msg: Any, name: str, number: int, value_type: str) -> None:
    """A proto3 map<string, VALUE_TYPE> field, spelled as protoc spells it (a nested map-entry message)."""
    entry = msg.nested_type.add(name="".join(p.title() for p in name.split("_")) + "Entry")
    entry.options.map_entry = True
    add_field(entry, "key", 1, _F.TYPE_STRING)
    add_field(entry, "value", 2, _F.TYPE_MESSAGE, value_type)
    add_field(msg, name, number, _F.TYPE_MESSAGE, f"{msg.name}.{entry.name}", repeated=True)


def new_pool() -> descriptor_pool.DescriptorPool:
    """A descriptor pool of our own (never protobuf's default, which TensorFlow fills) with the wrapper types."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    return pool


@cache
def _pool() -> descriptor_pool.DescriptorPool:
    pool = new_pool()
    tf = descriptor_pb2.FileDescriptorProto(name="autotune/tf_wire.proto", package="tensorflow", syntax="proto3")
    shape = tf.message_type.add(name="TensorShapeProto")
    dim = shape.nested_type.add(name="Dim")
    add_field(dim, "size", 1, _F.TYPE_INT64)
    add_field(dim, "name", 2, _F.TYPE_STRING)
    add_field(shape, "dim", 2, _F.TYPE_MESSAGE, ".tensorflow.TensorShapeProto.Dim", repeated=True)
    add_field(shape, "unknown_rank", 3, _F.TYPE_BOOL)

    tensor = tf.message_type.add(name="TensorProto")
    add_field(tensor, "dtype", 1, _F.TYPE_INT32)  # an enum on the wire is a varint, as int32 is
    add_field(tensor, "tensor_shape", 2, _F.TYPE_MESSAGE, ".tensorflow.TensorShapeProto")
    add_field(tensor, "tensor_content", 4, _F.TYPE_BYTES)
    add_field(tensor, "string_val", 8, _F.TYPE_BYTES, repeated=True)
    # The typed value fields a writer may use instead of tensor_content (tf.make_tensor_proto does for
    # small tensors, hand-written warm-up files often do): read them all, write none.
    for name, number, ftype in _TYPED_VALUES:
        add_field(tensor, name, number, ftype, repeated=True)

    info = tf.message_type.add(name="TensorInfo")
    add_field(info, "name", 1, _F.TYPE_STRING)
    add_field(info, "dtype", 2, _F.TYPE_INT32)
    add_field(info, "tensor_shape", 3, _F.TYPE_MESSAGE, ".tensorflow.TensorShapeProto")

    sig = tf.message_type.add(name="SignatureDef")
    _map(sig, "inputs", 1, ".tensorflow.TensorInfo")
    _map(sig, "outputs", 2, ".tensorflow.TensorInfo")
    add_field(sig, "method_name", 3, _F.TYPE_STRING)

    meta = tf.message_type.add(name="MetaGraphDef")
    meta_info = meta.nested_type.add(name="MetaInfoDef")  # nested, as in meta_graph.proto
    add_field(meta_info, "tags", 4, _F.TYPE_STRING, repeated=True)
    add_field(meta, "meta_info_def", 1, _F.TYPE_MESSAGE, ".tensorflow.MetaGraphDef.MetaInfoDef")
    _map(meta, "signature_def", 5, ".tensorflow.SignatureDef")

    saved = tf.message_type.add(name="SavedModel")
    add_field(saved, "saved_model_schema_version", 1, _F.TYPE_INT64)
    add_field(saved, "meta_graphs", 2, _F.TYPE_MESSAGE, ".tensorflow.MetaGraphDef", repeated=True)
    pool.Add(tf)

    serving = descriptor_pb2.FileDescriptorProto(
        name="autotune/tf_serving_wire.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto", "autotune/tf_wire.proto"],
    )
    spec = serving.message_type.add(name="ModelSpec")
    add_field(spec, "name", 1, _F.TYPE_STRING)
    add_field(spec, "version", 2, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    add_field(spec, "signature_name", 3, _F.TYPE_STRING)
    request = serving.message_type.add(name="PredictRequest")
    add_field(request, "model_spec", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.ModelSpec")
    _map(request, "inputs", 2, ".tensorflow.TensorProto")
    # prediction_log.proto: the record type of TF Serving's warm-up files. The other kinds of log are kept
    # as bytes: enough to say which kind a record is, never parsed.
    predict_log = serving.message_type.add(name="PredictLog")
    add_field(predict_log, "request", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.PredictRequest")
    log = serving.message_type.add(name="PredictionLog")
    log.oneof_decl.add(name="log_type")
    for name, number in PREDICTION_LOG_KINDS.items():
        if name == "predict_log":
            add_field(log, name, number, _F.TYPE_MESSAGE, ".tensorflow.serving.PredictLog")
        else:
            add_field(log, name, number, _F.TYPE_BYTES)
        log.field[-1].oneof_index = 0
    pool.Add(serving)
    return pool


def message(full_name: str) -> Any:
    """A new, empty message of FULL_NAME (e.g. "tensorflow.SavedModel")."""
    return GetMessageClass(_pool().FindMessageTypeByName(full_name))()
