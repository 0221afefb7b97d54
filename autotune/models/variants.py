"""Model variants built from a SavedModel: TFLite float16 and int8, placed where TF Serving looks for them.

TF Serving with `--prefer_tflite_model` serves `model.tflite` from the SavedModel's
version directory instead of the graph. A variant here is such a version directory:
the original SavedModel (signatures, assets) beside the converted `model.tflite`.
Dynamic-range int8 needs no data; full-integer int8 calibrates on representative
requests (a request file's).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autotune.errors import AutotuneError
from autotune.knobs import is_tflite
from autotune.models.resolve import ModelRef
from autotune.servers.argv import TFLITE_FILE

# Variant name -> what it is, in one line.
VARIANTS = {
    "tflite_fp16": "TFLite, weights in float16",
    "tflite_int8": "TFLite, int8 weights, float activations (dynamic range); full integer with --requests",
    "xla": "the SavedModel with its signature XLA-compiled (jit_compile), served with --xla_cpu_compilation_enabled",
}


@dataclass(frozen=True)
class Variant:
    """A built variant: its name, its model base (BASE/VERSION/model.tflite beside the SavedModel, or a
    re-saved SavedModel), and how long the conversion took."""

    name: str
    base: Path
    version: int
    convert_s: float

    @property
    def tflite(self) -> Path:
        return self.base / str(self.version) / TFLITE_FILE

    @property
    def model_file(self) -> Path:
        """What the variant changed: its model.tflite, or its re-saved saved_model.pb."""
        return self.tflite if is_tflite(self.name) else self.base / str(self.version) / "saved_model.pb"

    @property
    def size_bytes(self) -> int:
        return self.model_file.stat().st_size


def _converter(model: ModelRef, variant: str, representative: list[dict[str, np.ndarray]] | None) -> Any:
    import tensorflow as tf

    # From the loaded signature, not from_saved_model: with TF 2.21 that path reads this project's Keras-built
    # SavedModels' variables as NaN (tests/test_variants.py would catch it: the guard fails every variant).
    loaded = tf.saved_model.load(str(model.version_path))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([loaded.signatures[model.signature.name]], loaded)
    # TFLite's own ops only: TensorFlow's kernels (Flex, for a JPEG decode inside the graph) are not in the
    # interpreter TensorFlow ships, so such a variant could be built but never run here.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "tflite_fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif representative:
        names = sorted(model.signature.inputs)

        def samples() -> Iterator[list[np.ndarray]]:
            for tensors in representative:
                for i in range(len(tensors[names[0]])):
                    yield [tensors[n][i : i + 1] for n in names]

        converter.representative_dataset = samples
    return converter


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Hold back what the converter's C++ writes to stderr (pages of MLIR locations for one unsupported op):
    its error reaches the user as one line instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def build_variant(
    model: ModelRef,
    variant: str,
    out_base: Path,
    representative: list[dict[str, np.ndarray]] | None = None,
) -> Variant:
    """Convert MODEL to VARIANT into OUT_BASE/VERSION/ (a copy of the SavedModel beside model.tflite).
    Raises a one-line AutotuneError when TFLite cannot convert it."""
    if variant not in VARIANTS:
        raise AutotuneError(f"unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
    version = out_base / str(model.version)
    if version.exists():
        raise AutotuneError(f"{version} already exists")
    if not is_tflite(variant):
        return _build_xla(model, out_base)
    started = time.monotonic()
    try:
        with _quiet_stderr():
            flat = _converter(model, variant, representative).convert()
    except Exception as exc:  # the converter raises many types for what it cannot convert
        missing = sorted(set(re.findall(r"'(tf\.\w+)' op is neither a custom op nor a flex op", str(exc))))
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        why = f"TFLite has no kernel for {', '.join(missing)}" if missing else first
        raise AutotuneError(f"{model.name}: cannot become {variant}: {why}") from None
    took = time.monotonic() - started
    version.mkdir(parents=True)
    for entry in model.version_path.iterdir():
        if entry.name == TFLITE_FILE:
            continue
        if entry.is_dir():
            shutil.copytree(entry, version / entry.name)
        else:
            shutil.copy2(entry, version / entry.name)
    (version / TFLITE_FILE).write_bytes(flat)
    return Variant(variant, out_base, model.version, round(took, 3))


def _build_xla(model: ModelRef, out_base: Path) -> Variant:
    """MODEL re-saved with its signature wrapped in an XLA-compiled function, and compiled once here: an op XLA
    has no kernel for is a one-line error now, not a failed first request in the server."""
    import tensorflow as tf

    from autotune.traffic.payload import synthetic_tensors

    strings = sorted(n for n, spec in model.signature.inputs.items() if spec.dtype == "string")
    if strings:  # an XLA computation's arguments are numbers: a JPEG string is decoded outside it or not at all
        raise AutotuneError(f"{model.name}: cannot become xla: XLA takes no string inputs ({', '.join(strings)})")
    started = time.monotonic()
    loaded = tf.saved_model.load(str(model.version_path))
    original = loaded.signatures[model.signature.name]
    specs = original.structured_input_signature[1]
    names = sorted(specs)

    module = tf.Module()
    module.original = loaded  # tracks the variables the signature reads
    compiled = tf.function(
        lambda *args: original(**dict(zip(names, args, strict=True))),
        input_signature=[tf.TensorSpec(specs[n].shape, specs[n].dtype, n) for n in names],
        jit_compile=True,
        autograph=False,
    )
    try:
        with _quiet_stderr():
            sample = synthetic_tensors(model.signature, 1)
            compiled(*[tf.constant(sample[n]) for n in names])
    except Exception as exc:  # XLA raises InvalidArgumentError and others for what it cannot compile
        ops = sorted(set(re.findall(r"No registered '(\w+)' OpKernel for XLA_CPU_JIT", str(exc))))
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        why = f"XLA has no kernel for {', '.join(ops)}" if ops else first
        raise AutotuneError(f"{model.name}: cannot become xla: {why}") from None
    version = out_base / str(model.version)
    tf.saved_model.save(module, str(version), signatures={model.signature.name: compiled.get_concrete_function()})
    extra = model.version_path / "assets.extra"
    if extra.is_dir():  # the model's own warm-up file goes with it
        shutil.copytree(extra, version / "assets.extra")
    took = time.monotonic() - started
    return Variant("xla", out_base, model.version, round(took, 3))
