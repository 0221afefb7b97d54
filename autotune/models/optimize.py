"""`autotune models optimize`: build a model's variants and check each against the original's answers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autotune.errors import AutotuneError
from autotune.knobs import is_tflite
from autotune.models.accuracy import (
    DEFAULT_MIN_TOP1_AGREEMENT,
    Accuracy,
    compare_outputs,
    savedmodel_outputs,
    tflite_outputs,
)
from autotune.models.resolve import ModelRef
from autotune.models.variants import Variant, build_variant
from autotune.paths import autotune_home
from autotune.traffic.payload import synthetic_tensors
from autotune.traffic.requests import load_requests

# Synthetic inputs for the guard when no request file is given: this many, in requests of SAMPLE_BATCH.
SAMPLE_BATCH = 16
GUARD_SAMPLES = 128


@dataclass(frozen=True)
class Checked:
    """A built variant, its accuracy against the original, and why it fails the guard (None: it passes)."""

    variant: Variant
    accuracy: Accuracy
    problem: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant.name,
            "path": str(self.variant.base),
            "model_bytes": self.variant.size_bytes,
            "convert_s": self.variant.convert_s,
            "accuracy": self.accuracy.to_json(),
            "passes": self.problem is None,
            "problem": self.problem,
        }


def variant_outputs(model: ModelRef, variant: Variant, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """VARIANT's answers on INPUTS: through the TFLite interpreter, or its own SavedModel (XLA-compiled)."""
    if is_tflite(variant.name):
        return tflite_outputs(variant.tflite, model.signature.name, inputs)
    return savedmodel_outputs(replace(model, base_path=variant.base), inputs)


def guard_inputs(model: ModelRef, requests_file: str | None, samples: int) -> list[dict[str, Any]]:
    """The fixed inputs every variant is checked on: the request file's, or SAMPLES synthetic instances."""
    if requests_file is not None:
        return [r.tensors for r in load_requests(requests_file, model.signature).requests]
    batches = []
    for seed in range(max(1, -(-samples // SAMPLE_BATCH))):
        batch = min(SAMPLE_BATCH, samples - seed * SAMPLE_BATCH)
        batches.append(synthetic_tensors(model.signature, batch, seed=seed))
    return batches


def optimize(
    model: ModelRef,
    variants: list[str],
    out: Path,
    requests_file: str | None = None,
    samples: int = 128,
    min_top1: float | None = DEFAULT_MIN_TOP1_AGREEMENT,
    max_abs: float | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> list[Checked]:
    """Build each of VARIANTS under OUT/<variant>/ and check it against MODEL on the same inputs."""
    inputs = guard_inputs(model, requests_file, samples)
    say(f"reference outputs of {model.name} on {sum(len(next(iter(b.values()))) for b in inputs)} inputs")
    reference = savedmodel_outputs(model, inputs)
    # Full-integer int8 calibrates on the user's requests when there are some.
    representative = inputs if requests_file is not None else None
    checked = []
    for name in variants:
        say(f"converting {name}")
        variant = build_variant(model, name, out / name, representative)
        accuracy = compare_outputs(reference, variant_outputs(model, variant, inputs))
        checked.append(Checked(variant, accuracy, accuracy.problem(min_top1, max_abs)))
    return checked


def _inputs_key(requests_file: str | None, samples: int) -> str:
    """Names the guard's input set: the request file's bytes, or the synthetic count."""
    if requests_file is None:
        return f"synthetic-{samples}"
    return "requests-" + hashlib.sha256(Path(requests_file).read_bytes()).hexdigest()[:16]


def _variants_root(model: ModelRef) -> Path:
    """Where MODEL's variants and accuracy figures are kept: one directory per model content."""
    from autotune.models.content import content_hash

    root = autotune_home() / "variants" / f"{model.name}-{content_hash(model.version_path)[:16]}"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _checked_accuracy(
    figures: Path,
    model: ModelRef,
    inputs: Callable[[], list[dict[str, Any]]],
    answers: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
) -> Accuracy:
    """The accuracy stored in FIGURES, else ANSWERS against MODEL's own on INPUTS, computed once and stored."""
    if figures.is_file():
        return Accuracy.from_json(json.loads(figures.read_text()))
    guard = inputs()
    accuracy = compare_outputs(savedmodel_outputs(model, guard), answers(guard))
    figures.write_text(json.dumps(accuracy.to_json()))
    return accuracy


def checked_served(
    model: ModelRef,
    name: str,
    ask: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    requests_file: str | None = None,
    min_top1: float | None = DEFAULT_MIN_TOP1_AGREEMENT,
    max_abs: float | None = None,
    samples: int = GUARD_SAMPLES,
) -> tuple[Accuracy, str | None]:
    """The accuracy of what a server answers under NAME (a numerics option such as bfloat16 mixed precision)
    against MODEL's own answers, asked through ASK once per model content and input set, then read back; and why
    it fails the guard."""
    from filelock import FileLock

    root = _variants_root(model)
    figures = root / f"{name}.accuracy-{_inputs_key(requests_file, samples)}.json"
    with FileLock(str(root / f"{name}.lock")):
        accuracy = _checked_accuracy(figures, model, lambda: guard_inputs(model, requests_file, samples), ask)
    return accuracy, accuracy.problem(min_top1, max_abs)


def checked_variant(
    model: ModelRef,
    name: str,
    requests_file: str | None = None,
    min_top1: float | None = DEFAULT_MIN_TOP1_AGREEMENT,
    max_abs: float | None = None,
    samples: int = GUARD_SAMPLES,
) -> Checked:
    """MODEL's variant NAME and its accuracy, built and checked once per model content and input set, then
    read back (a job's trials share it): $AUTOTUNE_HOME/variants/<model>-<content hash>/<variant>."""
    from functools import cache

    from filelock import FileLock

    root = _variants_root(model)
    key = _inputs_key(requests_file, samples)
    # Full-integer int8 is calibrated on the request file: another file, another variant.
    built = root / (f"{name}-{key}" if name == "tflite_int8" and requests_file is not None else name)
    figures = built.with_name(f"{built.name}.accuracy-{key}.json")
    inputs = cache(lambda: guard_inputs(model, requests_file, samples))  # read once, if at all
    with FileLock(str(built.with_name(f"{built.name}.lock"))):
        variant_json, failed = built / "variant.json", built.with_name(f"{built.name}.failed")
        if failed.is_file():  # the converter's verdict stands for these bytes: a job does not retry it per trial
            raise AutotuneError(failed.read_text())
        if not variant_json.is_file():
            staging = root / f".{built.name}.{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            try:
                variant = build_variant(model, name, staging, inputs() if requests_file is not None else None)
            except AutotuneError as exc:
                failed.write_text(str(exc))
                raise
            (staging / "variant.json").write_text(json.dumps({"convert_s": variant.convert_s}))
            shutil.rmtree(built, ignore_errors=True)
            staging.rename(built)  # whole or absent: a killed build leaves only a staging directory
        variant = Variant(name, built, model.version, json.loads(variant_json.read_text())["convert_s"])
        accuracy = _checked_accuracy(figures, model, inputs, lambda guard: variant_outputs(model, variant, guard))
    return Checked(variant, accuracy, accuracy.problem(min_top1, max_abs))
