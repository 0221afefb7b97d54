"""TF Serving's model warm-up files: written from the requests a trial sends, placed where the server reads them.

TF Serving replays `<version>/assets.extra/tf_serving_warmup_requests` (a TFRecord of
PredictionLog, at most 1000 records) before it reports a model AVAILABLE, so a deployed
server's first requests do not pay for lazy initialisation. Trials give every server
the same file an export ships, so what was measured starts as warm as what is deployed.
"""

from __future__ import annotations

import os
from pathlib import Path

from autotune.models.resolve import ModelRef
from autotune.servers.argv import MAX_WARMUP_RECORDS, PER_MODEL_BATCHING_FILE, WARMUP_FILE
from autotune.tfrecord import encode
from autotune.tfwire import message
from autotune.traffic.payload import Payload


def prediction_log(payload: Payload) -> bytes:
    """PAYLOAD's gRPC request as one serialized PredictionLog (predict_log)."""
    log = message("tensorflow.serving.PredictionLog")
    log.predict_log.request.ParseFromString(payload.grpc_request)
    return log.SerializeToString()


def warmup_records(payloads: list[Payload]) -> bytes:
    """The warm-up file's bytes for the first MAX_WARMUP_RECORDS PAYLOADS."""
    return encode(prediction_log(p) for p in payloads[:MAX_WARMUP_RECORDS])


def write_warmup_file(path: Path, payloads: list[Payload]) -> int:
    """Write the first MAX_WARMUP_RECORDS payloads as a warm-up file at PATH; return how many records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(warmup_records(payloads))
    return min(len(payloads), MAX_WARMUP_RECORDS)


def has_own_warmup(model: ModelRef) -> bool:
    """Whether the model ships its own warm-up file (then it is used as it is)."""
    return (model.version_path / WARMUP_FILE).is_file()


def warmed_model_base(model: ModelRef, payloads: list[Payload], base: Path, batching: str | None = None) -> Path:
    """BASE, made a model base that TF Serving loads as MODEL with a warm-up file of PAYLOADS (the model's
    own, if it ships one), and, given BATCHING, that text as the model's own batching_params.pbtxt.

    The user's model is never written to: the version directory is rebuilt of symlinks to its entries,
    beside an assets.extra that holds the warm-up file (and links to anything else already in there)."""
    version = base / str(model.version)
    extra = version / WARMUP_FILE.parent
    extra.mkdir(parents=True)
    for entry in model.version_path.iterdir():
        if entry.name != WARMUP_FILE.parent.name and not (batching and entry.name == PER_MODEL_BATCHING_FILE):
            os.symlink(entry.resolve(), version / entry.name)
    if batching is not None:
        (version / PER_MODEL_BATCHING_FILE).write_text(batching)
    own_extra = model.version_path / WARMUP_FILE.parent
    if own_extra.is_dir():
        for entry in own_extra.iterdir():
            os.symlink(entry.resolve(), extra / entry.name)
    if not has_own_warmup(model):  # else its link is there, and writing would write through it
        write_warmup_file(version / WARMUP_FILE, payloads)
    return base
