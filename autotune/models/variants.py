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
from autotune.models.resolve import ModelRef
from autotune.servers.argv import TFLITE_FILE

# Variant name -> what it is, in one line.
VARIANTS = {
    "tflite_fp16": "TFLite, weights in float16",
    "tflite_int8": "TFLite, int8 weights, float activations (dynamic range); full integer with --requests",
}


@dataclass(frozen=True)
class Variant:
    """A built variant: its name, its model base (BASE/VERSION/model.tflite beside the SavedModel), how long
    the conversion took, and the size of model.tflite."""

    name: str
    base: Path
    version: int
    convert_s: float
    size_bytes: int

    @property
    def tflite(self) -> Path:
        return self.base / str(self.version) / TFLITE_FILE


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
    return Variant(variant, out_base, model.version, round(took, 3), len(flat))
