"""Request payloads built from a model's signature, serialized once per trial.

Image signatures (string input) get a JPEG, as TF Serving's resnet client sends;
numeric inputs get random tensors of the signature's shape with batch size 1.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from autotune.models.signature import Signature, TensorSpec
from autotune.tfwire import DTYPE_ENUM, message


@dataclass(frozen=True)
class Payload:
    """One request, ready to send: the REST body and the serialized gRPC PredictRequest."""

    rest_body: bytes
    grpc_request: bytes


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


def build_payload(model_name: str, signature: Signature, seed: int = 0) -> Payload:
    """Build the REST body (row format, like TF Serving's example clients) and gRPC request."""
    rng = np.random.default_rng(seed)
    examples = {name: _example(spec, rng) for name, spec in sorted(signature.inputs.items())}
    if len(examples) == 1:
        instance: Any = _json_value(next(iter(examples.values())))
    else:
        instance = {name: _json_value(v) for name, v in examples.items()}
    doc: dict[str, Any] = {"instances": [instance]}
    if signature.name != "serving_default":
        doc["signature_name"] = signature.name
    request = message("tensorflow.serving.PredictRequest")
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature.name
    for name, value in examples.items():
        request.inputs[name].CopyFrom(tensor_proto(value[np.newaxis, ...]))
    return Payload(json.dumps(doc).encode(), request.SerializeToString())
