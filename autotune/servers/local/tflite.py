"""A version directory's model.tflite served as TF Serving's `--prefer_tflite_model` serves it.

TF Serving keeps a pool of `--num_tflite_pools` interpreters (default: one per
schedulable CPU), each built with TFLite's own thread default; a request takes a
free interpreter and waits while none is free
(tensorflow_serving/servables/tensorflow/tflite_session.cc, tflite_interpreter_pool.cc).
Each signature becomes a TF function that runs an interpreter from the pool, so the
batch op and the request path are the SavedModel's own.
"""

from __future__ import annotations

import queue
import warnings
from pathlib import Path
from typing import Any

import numpy as np


class InterpreterPool:
    """NUM interpreters of one .tflite; `run` borrows one for a call and gives it back."""

    def __init__(self, path: Path, num: int) -> None:
        import tensorflow as tf

        content = path.read_bytes()
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice (LiteRT is not installed)
            interpreters = [tf.lite.Interpreter(model_content=content) for _ in range(max(1, num))]
        self.signature_keys = sorted(interpreters[0].get_signature_list())
        for interpreter in interpreters:
            self._free.put((interpreter, {}))
        self.size = len(interpreters)

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run SIGNATURE on one free interpreter (waiting for one), resized to the inputs' batch."""
        interpreter, runners = self._free.get()
        try:
            runner = runners.get(signature)
            if runner is None:
                runner = runners[signature] = interpreter.get_signature_runner(signature)
            return {k: np.array(v) for k, v in runner(**inputs).items()}
        finally:
            self._free.put((interpreter, runners))


def tflite_signatures(path: Path, signature_defs: dict[str, Any], pools: int) -> dict[str, Any]:
    """Signature key -> a traced TF function running PATH's signature of that key through a pool of POOLS
    interpreters. Input and output specs come from the SavedModel's SignatureDefs beside it."""
    pool = InterpreterPool(path, pools)
    functions = {}
    for key in pool.signature_keys:
        if key not in signature_defs:  # a model.tflite whose signature the SavedModel beside it does not declare
            raise ValueError(f"{path}: signature '{key}' is not in the SavedModel's signature defs")
        functions[key] = _signature_function(pool, key, signature_defs[key])
    return functions


def _signature_function(pool: InterpreterPool, key: str, sig: Any) -> _Named:
    import tensorflow as tf

    in_names, out_names = sorted(sig.inputs), sorted(sig.outputs)
    specs = [tf.TensorSpec(_shape(sig.inputs[n]), tf.dtypes.as_dtype(sig.inputs[n].dtype), n) for n in in_names]
    out_types = [tf.dtypes.as_dtype(sig.outputs[n].dtype) for n in out_names]

    def invoke(*arrays: np.ndarray) -> list[np.ndarray]:
        outputs = pool.run(key, dict(zip(in_names, arrays, strict=True)))
        return [outputs[n] for n in out_names]

    def call(*args: Any) -> dict[str, Any]:
        values = tf.numpy_function(invoke, list(args), out_types, stateful=True)
        return dict(zip(out_names, values, strict=True))

    return _Named(tf.function(call, input_signature=specs).get_concrete_function(), in_names)


class _Named:
    """A concrete function taking positional inputs, called the way a SavedModel signature is: by input name."""

    def __init__(self, fn: Any, in_names: list[str]) -> None:
        self._fn, self._in_names = fn, in_names
        specs = fn.structured_input_signature[0]
        self.structured_input_signature = ((), dict(zip(in_names, specs, strict=True)))
        self.structured_outputs = fn.structured_outputs

    def __call__(self, **inputs: Any) -> dict[str, Any]:
        return self._fn(*[inputs[n] for n in self._in_names])


def _shape(info: Any) -> list[int | None] | None:
    if info.tensor_shape.unknown_rank:
        return None
    return [d.size if d.size >= 0 else None for d in info.tensor_shape.dim]
