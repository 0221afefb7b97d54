"""The requests a trial sends: a user's request file, or synthetic ones, checked against the signature.

A request file holds a model's real traffic, in one of TF Serving's own formats:
JSON lines of REST predict bodies (`{"instances": ...}` row form or `{"inputs": ...}`
columnar), or a TFRecord file of PredictionLog records (its warm-up format). Every
record is read and checked once, before any server starts; the generator then
replays the serialized payloads round robin. `batch` regroups the instances into
requests of that many (client-side batching).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autotune.errors import AutotuneError
from autotune.models.signature import Signature
from autotune.restjson import RequestError, decode_inputs
from autotune.tfrecord import is_tfrecord, read_records
from autotune.tfwire import DTYPES, message
from autotune.traffic.payload import Payload, payload_of, synthetic_tensors, tensor_array

# Every payload travels to the generator and stays in its memory: a few hundred representative
# requests replay a traffic mix; more only costs memory.
MAX_REQUESTS = 10_000
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_BATCH = 4096


@dataclass(frozen=True)
class Request:
    """One request's input tensors (batch dimension first) and the REST form it came in."""

    tensors: dict[str, np.ndarray]
    row: bool = True

    @property
    def instances(self) -> int:
        return len(next(iter(self.tensors.values())))


@dataclass(frozen=True)
class RequestSet:
    """The requests to replay, where they came from (a file, or 'synthetic') and its format."""

    source: str
    format: str  # jsonl | predictionlog | synthetic
    requests: tuple[Request, ...]

    @property
    def instances_per_request(self) -> float:
        return sum(r.instances for r in self.requests) / len(self.requests)

    def payloads(self, model_name: str, signature_name: str) -> list[Payload]:
        """Every request serialized for REST and gRPC, once."""
        return [payload_of(model_name, signature_name, r.tensors, r.row) for r in self.requests]

    def summary(self) -> dict[str, Any]:
        """What a result records about its traffic."""
        return {
            "source": self.source,
            "format": self.format,
            "requests": len(self.requests),
            "instances_per_request": round(self.instances_per_request, 3),
        }


def tensor_problem(name: str, value: np.ndarray, signature: Signature) -> str | None:
    """Why VALUE cannot be input NAME of SIGNATURE (wrong dtype, rank or fixed dimension), or None."""
    spec = signature.inputs[name]
    dtype = "string" if value.dtype == object else value.dtype.name
    if dtype != spec.dtype:
        return f"input {name!r} is {dtype}; the signature takes {spec.dtype}"
    if value.ndim == 0:
        return f"input {name!r} has no batch dimension"
    if spec.shape is None:
        return None
    want = "(" + ", ".join("-1" if d is None else str(d) for d in spec.shape) + ")"
    if value.ndim != len(spec.shape) or any(
        d is not None and d != v for d, v in zip(spec.shape, value.shape, strict=True)
    ):
        return f"input {name!r} has shape {tuple(value.shape)}; the signature takes {want}"
    return None


def request_problem(tensors: dict[str, np.ndarray], signature: Signature) -> str | None:
    """Why TENSORS are not one request SIGNATURE can serve, or None."""
    if set(tensors) != set(signature.inputs):
        return f"inputs {sorted(tensors)} do not match the signature's {sorted(signature.inputs)}"
    for name, value in sorted(tensors.items()):
        problem = tensor_problem(name, value, signature)
        if problem:
            return problem
    batches = {value.shape[0] for value in tensors.values()}
    if len(batches) > 1:
        return f"inputs disagree on the batch size ({sorted(batches)})"
    if batches == {0}:
        return "the request holds no instances"
    return None


def _signature_problem(asked: str, signature: Signature) -> str | None:
    name = asked or "serving_default"
    return None if name == signature.name else f"calls signature {name!r}; the study measures {signature.name!r}"


def _json_request(line: str, signature: Signature) -> Request:
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object (expected a REST predict body)")
    problem = _signature_problem(doc.get("signature_name", ""), signature)
    if problem:
        raise ValueError(problem)
    try:
        tensors, row = decode_inputs(doc, {name: spec.dtype for name, spec in signature.inputs.items()})
    except RequestError as exc:
        raise ValueError(str(exc)) from None
    return Request(tensors, row)


def _prediction_log_request(record: bytes, signature: Signature) -> Request:
    log = message("tensorflow.serving.PredictionLog")
    try:
        log.ParseFromString(record)
    except Exception:  # protobuf raises DecodeError and others for garbage
        raise ValueError("not a PredictionLog") from None
    kind = log.WhichOneof("log_type")
    if kind != "predict_log":
        raise ValueError(f"is {('a ' + kind) if kind else 'an empty log'}; only predict_log records are replayed")
    request = log.predict_log.request
    problem = _signature_problem(request.model_spec.signature_name, signature)
    if problem:
        raise ValueError(problem)
    tensors = {}
    for name, proto in request.inputs.items():
        spec = signature.inputs.get(name)
        dtype = DTYPES.get(proto.dtype, f"dtype_{proto.dtype}")
        if spec is not None and dtype != spec.dtype:
            raise ValueError(f"input {name!r} is {dtype}; the signature takes {spec.dtype}")
        tensors[name] = tensor_array(proto)
    return Request(tensors, row=True)


def read_request_file(path: Path, signature: Signature) -> RequestSet:
    """Every record of PATH, checked against SIGNATURE; a bad one is a one-line error naming it."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise AutotuneError(f"{path}: {size / 2**20:.0f} MiB; request files are limited to 256 MiB")
        data = path.read_bytes()
    except OSError as exc:
        raise AutotuneError(f"request file {path}: cannot read: {exc.strerror}") from None
    if is_tfrecord(data[:12]):
        fmt, unit = "predictionlog", "record"
        records: list[tuple[int, Any]] = list(enumerate(read_records(data, str(path)), start=1))
        parse = _prediction_log_request
    else:
        fmt, unit = "jsonl", "line"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise AutotuneError(
                f"{path}: neither JSON lines (not UTF-8) nor a TFRecord file of PredictionLog"
            ) from None
        records = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
        parse = _json_request  # type: ignore[assignment]
    if not records:
        raise AutotuneError(f"{path}: no requests in it")
    if len(records) > MAX_REQUESTS:
        raise AutotuneError(f"{path}: {len(records)} requests; autotune replays at most {MAX_REQUESTS}")
    requests = []
    for number, record in records:
        try:
            request = parse(record, signature)
            problem = request_problem(request.tensors, signature)
            if problem:
                raise ValueError(problem)
        except ValueError as exc:
            raise AutotuneError(f"{path}: {unit} {number}: {exc}") from None
        requests.append(request)
    return RequestSet(str(path), fmt, tuple(requests))


def regroup(requests: RequestSet, batch: int) -> RequestSet:
    """The same instances, in order and round robin, as requests of BATCH instances each."""
    first = requests.requests[0]
    try:
        pooled = {name: np.concatenate([r.tensors[name] for r in requests.requests]) for name in first.tensors}
    except ValueError:
        raise AutotuneError(
            f"{requests.source}: requests differ in shape beyond the batch dimension; batch cannot merge them"
        ) from None
    total = len(next(iter(pooled.values())))
    count = min(MAX_REQUESTS, max(1, math.ceil(total / batch)))
    grouped = []
    for i in range(count):
        rows = [(i * batch + j) % total for j in range(batch)]
        grouped.append(Request({name: value[rows] for name, value in pooled.items()}, first.row))
    return RequestSet(requests.source, requests.format, tuple(grouped))


def check_batch(batch: int | None) -> None:
    """Refuse a batch size that is not a whole number of instances in range."""
    if batch is not None and not 1 <= batch <= MAX_BATCH:
        raise AutotuneError(f"batch must be in 1..{MAX_BATCH} instances per request, got {batch}")


def load_requests(path: str | None, signature: Signature, batch: int | None = None) -> RequestSet:
    """The requests to send: PATH's (regrouped into BATCH-instance requests if given), or one synthetic
    request of BATCH instances (default 1)."""
    check_batch(batch)
    if path is None:
        requests = RequestSet("synthetic", "synthetic", (Request(synthetic_tensors(signature, batch or 1)),))
    else:
        requests = read_request_file(Path(path), signature)
        requests = regroup(requests, batch) if batch else requests
    problem = request_problem(requests.requests[0].tensors, signature)
    if problem:  # a signature with a fixed batch dimension takes no other batch
        raise AutotuneError(f"batch {batch}: {problem}")
    return requests
