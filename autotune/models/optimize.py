"""`autotune models optimize`: build a model's variants and check each against the original's answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotune.load.payload import synthetic_tensors
from autotune.load.requests import load_requests
from autotune.models.accuracy import (
    DEFAULT_MIN_TOP1_AGREEMENT,
    Accuracy,
    compare_outputs,
    savedmodel_outputs,
    tflite_outputs,
)
from autotune.models.resolve import ModelRef
from autotune.models.variants import Variant, build_variant

# Synthetic inputs for the guard when no request file is given: this many, in requests of SAMPLE_BATCH.
SAMPLE_BATCH = 16


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
            "tflite_bytes": self.variant.size_bytes,
            "convert_s": self.variant.convert_s,
            "accuracy": self.accuracy.to_json(),
            "passes": self.problem is None,
            "problem": self.problem,
        }


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
        accuracy = compare_outputs(reference, tflite_outputs(variant.tflite, model.signature.name, inputs))
        checked.append(Checked(variant, accuracy, accuracy.problem(min_top1, max_abs)))
    return checked
