"""Request payloads, serialized once per trial: from tensors (a request file's), or synthetic.

Synthetic ones are built from the model's signature: image signatures (string input)
get a JPEG, as TF Serving's resnet client sends; numeric inputs get random tensors of
the signature's shape, one instance per request unless a batch is asked for.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from autotune.models.signature import Signature, TensorSpec
from autotune.tfwire import DTYPE_ENUM, DTYPES, VALUE_FIELD, message


@dataclass(frozen=True)
class Payload:
    """One request, ready to send: the REST body and the serialized gRPC PredictRequest."""

    rest_body: bytes
    grpc_request: bytes
    model: str | None = None  # the model it is for, where one server serves several (its REST path)


def synthetic_jpeg(width: int = 320, height: int = 240, seed: int = 0) -> bytes:
    """A photo-like JPEG (smooth gradients, shapes, mild noise), so it decodes like a real one."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(noisy)
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.ellipse([x0, y0, x0 + int(rng.integers(10, 80)), y0 + int(rng.integers(10, 80))], fill=color)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _example(spec: TensorSpec, rng: np.random.Generator) -> np.ndarray:
    """One instance (no batch dimension) for SPEC."""
    dims = list(spec.shape[1:]) if spec.shape else []
    shape = [d if d is not None else 1 for d in dims]
    if spec.dtype == "string":
        return np.array(synthetic_jpeg(seed=int(rng.integers(1 << 30))), dtype=object).reshape(shape or ())
    if spec.dtype.startswith("float") or spec.dtype == "bfloat16":
        return rng.standard_normal(shape).astype(spec.dtype if spec.dtype != "bfloat16" else "float32")
    if spec.dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    return rng.integers(0, 10, shape).astype(spec.dtype)


def _json_value(value: np.ndarray) -> Any:
    if value.dtype == object:
        return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])(value).tolist()
    return value.tolist()


def tensor_proto(value: np.ndarray) -> Any:
    """VALUE as a tensorflow.TensorProto, typed as tf.make_tensor_proto types it: bytes (an object array) in
    string_val, numbers packed in tensor_content."""
    dtype = "string" if value.dtype == object else value.dtype.name
    proto = message("tensorflow.TensorProto")
    proto.dtype = DTYPE_ENUM[dtype]
    for size in value.shape:
        proto.tensor_shape.dim.add(size=size)
    if dtype == "string":
        proto.string_val.extend(value.reshape(-1).tolist())
    else:
        # TensorFlow reads tensor_content as the host's (little-endian) row-major array.
        proto.tensor_content = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).tobytes()
    return proto


def tensor_array(proto: Any) -> np.ndarray:
    """A tensorflow.TensorProto as a numpy array, as tf.make_ndarray reads it (an object array for strings).

    Raises ValueError naming what does not fit: an unsupported dtype, a value count the shape cannot hold."""
    dtype = DTYPES.get(proto.dtype, f"dtype_{proto.dtype}")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    size = int(np.prod(shape, dtype=np.int64))
    if dtype == "string":
        values = np.empty(len(proto.string_val), dtype=object)
        values[:] = list(proto.string_val)
    elif proto.tensor_content:
        try:
            values = np.frombuffer(proto.tensor_content, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
        except (TypeError, ValueError):
            raise ValueError(f"{dtype} tensors are not supported") from None
    elif dtype in VALUE_FIELD:
        raw = list(getattr(proto, VALUE_FIELD[dtype]))
        values = np.array(raw, np.uint16).view(np.float16) if dtype == "float16" else np.array(raw, dtype=dtype)
    else:
        raise ValueError(f"{dtype} tensors are not supported")
    if 0 < len(values) < size:  # TensorFlow repeats the last value to fill the shape
        values = np.concatenate([values, np.repeat(values[-1:], size - len(values))])
    elif len(values) == 0 and size:
        values = np.zeros(size, dtype=object if dtype == "string" else dtype)
        if dtype == "string":
            values[:] = b""
    if len(values) != size:
        raise ValueError(f"{len(values)} values do not fit the shape {list(shape)}")
    return values.reshape(shape)


def payload_of(model_name: str, signature_name: str, tensors: dict[str, np.ndarray], row: bool = True) -> Payload:
    """The REST body (row `instances` like TF Serving's example clients, or columnar `inputs`) and the gRPC
    request for batched TENSORS."""
    values = {name: _json_value(v) for name, v in sorted(tensors.items())}
    doc: dict[str, Any]
    if row:
        batch = len(next(iter(tensors.values())))
        rows = [{name: v[i] for name, v in values.items()} for i in range(batch)]
        doc = {"instances": [next(iter(r.values())) if len(r) == 1 else r for r in rows]}
    else:
        doc = {"inputs": next(iter(values.values())) if len(values) == 1 else values}
    if signature_name != "serving_default":
        doc["signature_name"] = signature_name
    request = message("tensorflow.serving.PredictRequest")
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    for name, value in tensors.items():
        request.inputs[name].CopyFrom(tensor_proto(value))
    return Payload(json.dumps(doc).encode(), request.SerializeToString(), model_name)


def synthetic_tensors(signature: Signature, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """BATCH random instances for every input of SIGNATURE (a distinct JPEG per instance for images)."""
    rng = np.random.default_rng(seed)
    return {
        name: np.stack([_example(spec, rng) for _ in range(batch)]) for name, spec in sorted(signature.inputs.items())
    }


def build_payload(model_name: str, signature: Signature, seed: int = 0, batch: int = 1) -> Payload:
    """A synthetic request of BATCH instances for SIGNATURE."""
    return payload_of(model_name, signature.name, synthetic_tensors(signature, batch, seed))
