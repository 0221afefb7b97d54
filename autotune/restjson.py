"""TF Serving's REST JSON encoding: row (`instances`) and columnar (`inputs`) forms.

Binary strings travel as {"b64": "..."}; string outputs whose name ends in
`_bytes` are returned base64-encoded, as TF Serving does. The local server
decodes requests with it, and request files are read with it, so a file is
accepted exactly when the server would accept its bodies.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np


class RequestError(Exception):
    """A request the model cannot serve; `status` is the HTTP code to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _unwrap(value: Any, dtype: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {"b64"} and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise RequestError(400, 'invalid base64 in {"b64": ...} value') from None
        raise RequestError(400, "unexpected JSON object where a tensor value was expected")
    if isinstance(value, list):
        return [_unwrap(v, dtype) for v in value]
    if dtype == "string":
        if isinstance(value, str):
            return value.encode()
        raise RequestError(400, f'expected a string or {{"b64": ...}}, got {type(value).__name__}')
    if isinstance(value, str):
        raise RequestError(400, f"expected a number for a {dtype} input, got a string")
    return value


def _array(value: Any, dtype: str) -> np.ndarray:
    raw = _unwrap(value, dtype)
    try:
        if dtype == "string":
            arr = np.array(raw, dtype=object)
        else:
            arr = np.asarray(raw, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise RequestError(400, f"cannot convert input to {dtype}: {exc}") from None
    if arr.dtype == object and dtype != "string":
        raise RequestError(400, "ragged input: all instances must have the same shape")
    return arr


def _is_named(obj: Any) -> bool:
    return isinstance(obj, dict) and not (set(obj) == {"b64"}) and bool(obj)


def parse_body(body: bytes) -> tuple[dict[str, Any], str]:
    """Parse a predict body once -> (document, signature_name)."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"JSON parse error: {exc}") from None
    if not isinstance(doc, dict):
        raise RequestError(400, "request body must be a JSON object")
    signature = doc.get("signature_name", "")
    if not isinstance(signature, str):
        raise RequestError(400, "signature_name must be a string")
    return doc, signature


def decode_request(body: bytes, dtypes: dict[str, str]) -> tuple[str, dict[str, np.ndarray], bool]:
    """Parse a predict body -> (signature_name, inputs, row_format)."""
    doc, signature = parse_body(body)
    inputs, row = decode_inputs(doc, dtypes)
    return signature, inputs, row


def decode_inputs(doc: dict[str, Any], dtypes: dict[str, str]) -> tuple[dict[str, np.ndarray], bool]:
    """Tensors from a parsed body's `instances` (row) or `inputs` (columnar) -> (inputs, row_format)."""
    names = set(dtypes)
    if ("instances" in doc) == ("inputs" in doc):
        raise RequestError(400, "request must have exactly one of 'instances' (row) or 'inputs' (columnar)")
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list) or not instances:
            raise RequestError(400, "'instances' must be a non-empty list")
        columns: dict[str, list[Any]] = {n: [] for n in names}
        for inst in instances:
            if _is_named(inst):
                if set(inst) != names:
                    raise RequestError(400, f"instance keys {sorted(inst)} do not match inputs {sorted(names)}")
                for n in names:
                    columns[n].append(inst[n])
            elif len(names) == 1:
                columns[next(iter(names))].append(inst)
            else:
                raise RequestError(400, f"each instance must be an object with keys {sorted(names)}")
        return {n: _array(columns[n], dtypes[n]) for n in names}, True
    inputs = doc["inputs"]
    if _is_named(inputs) and set(inputs) <= names:
        if set(inputs) != names:
            raise RequestError(400, f"'inputs' keys {sorted(inputs)} do not match inputs {sorted(names)}")
        return {n: _array(inputs[n], dtypes[n]) for n in names}, False
    if len(names) != 1:
        raise RequestError(400, f"'inputs' must be an object with keys {sorted(names)}")
    name = next(iter(names))
    return {name: _array(inputs, dtypes[name])}, False


def _jsonable(name: str, arr: np.ndarray) -> Any:
    if arr.dtype == object or arr.dtype.kind == "S":
        if name.endswith("_bytes"):
            return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])(arr).tolist()
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(arr).tolist()
    return arr.tolist()


def encode_response(outputs: dict[str, np.ndarray], row_format: bool) -> bytes:
    """Render outputs as {"predictions": [...]} (row) or {"outputs": ...} (columnar)."""
    values = {k: _jsonable(k, v) for k, v in outputs.items()}
    if not row_format:
        body: Any = {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    elif len(values) == 1:
        body = {"predictions": next(iter(values.values()))}
    else:
        sizes = {len(v) if isinstance(v, list) else -1 for v in values.values()}
        if len(sizes) != 1 or -1 in sizes:
            raise RequestError(400, "outputs have different batch sizes; use the columnar 'inputs' form")
        n = sizes.pop()
        body = {"predictions": [{k: v[i] for k, v in values.items()} for i in range(n)]}
    return json.dumps(body, separators=(",", ":")).encode()
