"""A loaded SavedModel whose signatures run, optionally, behind TF's batch op.

Batching uses `nondifferentiable_batch_function` (the BatchFunction kernel and
shared batch scheduler TF Serving's in-graph batching uses), so concurrent
requests from server threads are merged into batches in C++.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autotune.errors import AutotuneError
from autotune.models.resolve import latest_version
from autotune.restjson import RequestError


@dataclass(frozen=True)
class BatchingOptions:
    """The batching file's fields as the batch op takes them."""

    max_batch_size: int
    batch_timeout_micros: int
    num_batch_threads: int
    max_enqueued_batches: int
    allowed_batch_sizes: tuple[int, ...]


@dataclass(frozen=True)
class _Runner:
    """One signature, ready to call: its tensor names and specs, input dtypes, the traced function."""

    in_names: list[str]
    out_names: list[str]
    specs: dict[str, Any]
    dtypes: dict[str, str]
    fn: Any


class Servable:
    """The latest version of the model under a base path, ready to predict."""

    def __init__(
        self,
        base_path: Path,
        batching: BatchingOptions | None,
        on_batch: Callable[[int], None] | None = None,
        name: str = "model",
        tflite_pools: int | None = None,
    ) -> None:
        """TFLITE_POOLS (--prefer_tflite_model): serve the version's model.tflite through that many
        interpreters when it has one, as TF Serving does; else the SavedModel."""
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        from autotune.servers.argv import TFLITE_FILE

        self.version = latest_version(base_path)
        path = base_path / str(self.version)
        self._tf = tf
        saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
        meta = next(m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags)
        self.signature_defs = {k: v for k, v in meta.signature_def.items() if not k.startswith("__")}
        self.format = "tflite" if tflite_pools and (path / TFLITE_FILE).is_file() else "savedmodel"
        if self.format == "tflite":
            from autotune.servers.local.tflite import tflite_signatures

            functions = tflite_signatures(path / TFLITE_FILE, self.signature_defs, tflite_pools or 1)
            # TF Serving serves the signatures the .tflite has (tflite_session.cc builds them from it).
            self.signature_defs = {k: v for k, v in self.signature_defs.items() if k in functions}
        else:
            functions = self._load_savedmodel(path)
        self._runners = {key: self._runner(fn, batching, on_batch, f"{name}/{key}") for key, fn in functions.items()}

    def _load_savedmodel(self, path: Path) -> Any:
        tf = self._tf
        try:
            self._loaded = tf.saved_model.load(str(path), tags=["serve"])
        except Exception:
            # The server imports TF without Keras; a model that needs its registrations gets them and a retry.
            from autotune.tfimport import load_keras

            if not load_keras():
                raise
            self._loaded = tf.saved_model.load(str(path), tags=["serve"])
        return self._loaded.signatures

    def _runner(
        self, fn: Any, batching: BatchingOptions | None, on_batch: Callable[[int], None] | None, queue: str
    ) -> _Runner:
        tf = self._tf
        specs = fn.structured_input_signature[1]
        in_names = sorted(specs)
        out_names = sorted(fn.structured_outputs)

        def call(*args: Any) -> list[Any]:
            if on_batch is not None:
                tf.py_function(lambda n: on_batch(int(n)) or 0, [tf.shape(args[0])[0]], tf.int32)
            outputs = fn(**dict(zip(in_names, args, strict=True)))
            return [outputs[k] for k in out_names]

        if batching is not None:
            batched = tf.compat.v1.nondifferentiable_batch_function(
                num_batch_threads=batching.num_batch_threads,
                max_batch_size=batching.max_batch_size,
                batch_timeout_micros=batching.batch_timeout_micros,
                allowed_batch_sizes=list(batching.allowed_batch_sizes) or None,
                max_enqueued_batches=batching.max_enqueued_batches,
                # TF Serving splits no request across batches unless the file sets enable_large_batch_splitting.
                enable_large_batch_splitting=False,
            )(call)
            # The batch op finds its queue by its name scope: one scope per model and signature, or two models'
            # requests would be merged into one batch (TF Serving keeps a queue per model too).
            scope = "queue_" + re.sub(r"[^A-Za-z0-9_./-]", "_", queue)

            def call(*args: Any) -> list[Any]:
                with tf.name_scope(scope):
                    return batched(*args)

        graph_fn = tf.function(call, input_signature=[specs[n] for n in in_names])
        graph_fn.get_concrete_function()  # trace now, so the first request is not a compile
        dtypes = {k: ("string" if v.dtype == tf.string else v.dtype.as_numpy_dtype.__name__) for k, v in specs.items()}
        return _Runner(in_names, out_names, specs, dtypes, graph_fn)

    def input_dtypes(self, signature: str) -> dict[str, str]:
        """Input name -> numpy dtype name ('string' for DT_STRING)."""
        return self._get(signature).dtypes

    def method(self, signature: str) -> str:
        self._get(signature)
        return self.signature_defs[signature or "serving_default"].method_name

    def _get(self, signature: str) -> _Runner:
        name = signature or "serving_default"
        if name not in self._runners:
            raise RequestError(400, f'Serving signature name: "{name}" not found in signature def')
        return self._runners[name]

    def predict(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run SIGNATURE on a batch; raise RequestError for bad input or a full queue."""
        _cold_start().wait()
        tf = self._tf
        runner = self._get(signature)
        in_names, out_names, specs, graph_fn = runner.in_names, runner.out_names, runner.specs, runner.fn
        missing = [n for n in in_names if n not in inputs]
        extra = [n for n in inputs if n not in specs]
        if missing or extra:
            raise RequestError(400, f"input names do not match the signature: missing {missing}, unexpected {extra}")
        try:
            args = [tf.convert_to_tensor(inputs[n], dtype=specs[n].dtype) for n in in_names]
            for name, arg in zip(in_names, args, strict=True):
                if not specs[name].shape.is_compatible_with(arg.shape):
                    raise RequestError(
                        400, f"input '{name}' has shape {arg.shape.as_list()}, signature expects {specs[name].shape}"
                    )
            outputs = graph_fn(*args)
        except RequestError:
            raise
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as exc:
            raise RequestError(400, _first_line(exc)) from None
        except (tf.errors.UnavailableError, tf.errors.ResourceExhaustedError) as exc:
            raise RequestError(503, _first_line(exc)) from None
        except tf.errors.OpError as exc:
            raise RequestError(500, _first_line(exc)) from None
        return {k: v.numpy() for k, v in zip(out_names, outputs, strict=True)}


class _ColdStart:
    """Test-only: AUTOTUNE_TEST_COLD_START="SECONDS:DELAY_S" makes the first SECONDS after the first request
    slow, one request at a time, DELAY_S at first and less and less, as a cold model's first requests are.
    The measurement protocol must keep this out of its windows (tests/test_measurement.py)."""

    def __init__(self, setting: str) -> None:
        seconds, delay = [*setting.split(":"), "0"][:2] if setting else ("0", "0")
        self.seconds, self.delay = float(seconds), float(delay)
        self.first: float | None = None
        self.lock = threading.Lock()

    def wait(self) -> None:
        if self.seconds <= 0:
            return
        with self.lock:
            now = time.monotonic()
            self.first = self.first or now
            left = 1 - (now - self.first) / self.seconds
            if left > 0:
                time.sleep(self.delay * left)


@functools.cache
def _cold_start() -> _ColdStart:
    # Read when the server serves, not at import: a forked server's environment is set after the fork server's import.
    return _ColdStart(os.environ.get("AUTOTUNE_TEST_COLD_START", ""))


def load_failure(base: Path, exc: Exception) -> AutotuneError:
    """A model under BASE that does not load, as one line: autotune's own errors already are; TF's load errors run to
    many lines, the first says what failed (the last is often a hint about devices)."""
    if isinstance(exc, AutotuneError):
        return exc
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return AutotuneError(f"failed to load model from {base}: {first}")


def _first_line(exc: BaseException) -> str:
    """The informative line of a TF error (TF puts 'Graph execution error:' and frames first)."""
    text = getattr(exc, "message", None) or str(exc)
    noise = ("Graph execution error", "Detected at node", "File ", "[[", "Stack trace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith((" ", "\t"))]
    useful = [ln for ln in lines if not ln.startswith(noise)]
    return (useful or lines or [type(exc).__name__])[-1 if useful else 0]
