"""A variant's answers against the original model's, on the same inputs: the accuracy guard.

A speed-up that changes the answers is no speed-up. For classifier outputs (a batch of
scores over classes) the figure is top-1 agreement, the share of inputs where both pick
the same class; for every float output, the largest absolute and relative error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autotune.errors import AutotuneError
from autotune.models.resolve import ModelRef
from autotune.options import MIN_TOP1_AGREEMENT

# Without a study's own bound, a variant must pick the original's top class this often.
DEFAULT_MIN_TOP1_AGREEMENT = MIN_TOP1_AGREEMENT.default


@dataclass(frozen=True)
class Accuracy:
    """How close a variant's outputs are to the original's over SAMPLES inputs (None: no output of that kind)."""

    samples: int
    top1_agreement: float | None
    max_abs_error: float | None
    max_rel_error: float | None

    def problem(self, min_top1: float | None = DEFAULT_MIN_TOP1_AGREEMENT, max_abs: float | None = None) -> str | None:
        """Why the variant fails the guard, or None."""
        if min_top1 is not None and self.top1_agreement is not None and self.top1_agreement < min_top1:
            return f"top-1 agreement {self.top1_agreement:.3f} < {min_top1:g}"
        if max_abs is not None and self.max_abs_error is not None and self.max_abs_error > max_abs:
            return f"max abs error {self.max_abs_error:.3g} > {max_abs:g}"
        return None

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Accuracy:
        return Accuracy(doc["samples"], doc["top1_agreement"], doc["max_abs_error"], doc["max_rel_error"])

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "top1_agreement": self.top1_agreement,
            "max_abs_error": self.max_abs_error,
            "max_rel_error": self.max_rel_error,
        }


def _is_scores(value: np.ndarray) -> bool:
    return value.dtype.kind == "f" and value.ndim == 2 and value.shape[1] > 1


def compare_outputs(reference: list[dict[str, np.ndarray]], candidate: list[dict[str, np.ndarray]]) -> Accuracy:
    """Accuracy of CANDIDATE's outputs against REFERENCE's, request by request (the same inputs)."""
    agree = total = 0
    abs_err: list[float] = []
    rel_err: list[float] = []
    for ref, cand in zip(reference, candidate, strict=True):
        for name, want in ref.items():
            got = np.asarray(cand[name]).reshape(want.shape)
            if _is_scores(want):
                agree += int((want.argmax(axis=1) == got.argmax(axis=1)).sum())
                total += len(want)
            if want.dtype.kind == "f":
                diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
                abs_err.append(float(diff.max(initial=0.0)))
                scale = np.maximum(np.abs(want.astype(np.float64)), 1e-6)
                rel_err.append(float((diff / scale).max(initial=0.0)))
    samples = sum(len(next(iter(r.values()))) for r in reference)
    return Accuracy(
        samples,
        round(agree / total, 6) if total else None,
        max(abs_err) if abs_err else None,
        max(rel_err) if rel_err else None,
    )


def savedmodel_outputs(model: ModelRef, inputs: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The original model's outputs for each request of INPUTS."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(model.version_path)).signatures[model.signature.name]
    return [{k: v.numpy() for k, v in fn(**{n: tf.constant(x) for n, x in batch.items()}).items()} for batch in inputs]


def tflite_outputs(path: Path, signature: str, inputs: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """A TFLite model's outputs for each request of INPUTS, through its signature runner."""
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice (LiteRT is not installed here)
        interpreter = tf.lite.Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner(signature)
    # The runner resizes its inputs to each request's batch before it runs.
    try:
        return [{k: np.asarray(v) for k, v in runner(**batch).items()} for batch in inputs]
    except (RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AutotuneError(f"{path}: the TFLite interpreter cannot run it: {first}") from None


def served_outputs(
    grpc_target: str, model_name: str, signature: str, inputs: list[dict[str, np.ndarray]], timeout_s: float = 60.0
) -> list[dict[str, np.ndarray]]:
    """A running server's answers for each request of INPUTS, asked over gRPC one instance at a time (a batching
    server refuses a request larger than its max_batch_size). Raises AutotuneError when the server refuses one."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    answers = []
    with grpc.insecure_channel(grpc_target, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for batch in inputs:
            rows: list[dict[str, np.ndarray]] = []
            for i in range(len(next(iter(batch.values())))):
                request = predict_pb2.PredictRequest()
                request.model_spec.name, request.model_spec.signature_name = model_name, signature
                for name, value in batch.items():
                    request.inputs[name].CopyFrom(tf.make_tensor_proto(value[i : i + 1]))
                try:
                    reply = stub.Predict(request, timeout=timeout_s)
                except grpc.RpcError as exc:
                    raise AutotuneError(f"the server refused a guard input: {exc.details()}") from None
                rows.append({k: tf.make_ndarray(v) for k, v in reply.outputs.items()})
            answers.append({k: np.concatenate([r[k] for r in rows]) for k in rows[0]})
    return answers
