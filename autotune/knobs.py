"""The serving knobs: names, types, valid values, and one concrete configuration.

Knob names are the keys users write in `--set k=v` and in study files. Validity
ranges here are what TensorFlow Serving accepts; search ranges live in the space.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from autotune.cores import schedulable_cores
from autotune.cpulimit import whole_cores
from autotune.errors import AutotuneError


@dataclass(frozen=True)
class Knob:
    """One serving knob and the values TensorFlow Serving accepts for it."""

    name: str
    kind: type  # bool, int, float or list (of int)
    low: float | None = None
    high: float | None = None
    batching: bool = False  # only meaningful when enable_batching is on
    help: str = ""
    choices: tuple[str, ...] = ()  # the values of a str knob


def schedulable_cpus() -> int:
    """CPUs this process may run on, counted as TF's port::NumSchedulableCPUs does (the affinity mask)."""
    return len(schedulable_cores()) or 1


@dataclass(frozen=True)
class TFServingBatchingDefaults:
    """What TF Serving batches with when a BatchingParameters field is unset (or no batching file is given).

    TF Serving copies only the fields that are set into TensorFlow's shared batch scheduler options
    (tensorflow_serving/servables/tensorflow/bundle_factory_util.h: GetQueueOptions, CreateBatchScheduler);
    the others keep the defaults of tensorflow/core/kernels/batching_util/shared_batch_scheduler.h.
    """

    # shared_batch_scheduler.h SharedBatchScheduler::QueueOptions::input_batch_size_limit.
    max_batch_size: int = 1000
    # shared_batch_scheduler.h SharedBatchScheduler::QueueOptions::batch_timeout_micros.
    batch_timeout_micros: int = 0
    # shared_batch_scheduler.h SharedBatchScheduler::QueueOptions::max_enqueued_batches.
    max_enqueued_batches: int = 10

    @property
    def num_batch_threads(self) -> int:
        """SharedBatchScheduler::Options::num_batch_threads is port::MaxParallelism(): the schedulable CPUs."""
        return schedulable_cpus()


TFSERVING_BATCHING_DEFAULTS = TFServingBatchingDefaults()

SAVEDMODEL = "savedmodel"
# The model as TF Serving runs it: its SavedModel graph, a TFLite variant built from it (models/variants.py) and
# served with --prefer_tflite_model, or the SavedModel XLA-compiled (--xla_cpu_compilation_enabled).
MODEL_VARIANTS = (SAVEDMODEL, "tflite_fp16", "tflite_int8", "xla")


def is_tflite(variant: str) -> bool:
    """Whether VARIANT is served from model.tflite (--prefer_tflite_model); else it is a SavedModel of its own."""
    return variant.startswith("tflite_")


# --mixed_precision: oneDNN's bfloat16 auto mixed precision rewrite of a SavedModel's graph (TF Serving ignores it
# for a TFLite variant); "off" is TF Serving's default, no flag.
MIXED_PRECISION = ("off", "bfloat16")

_TF = TFSERVING_BATCHING_DEFAULTS
_UNSET = "batching file field; when unset TF Serving uses"

KNOBS: dict[str, Knob] = {
    k.name: k
    for k in (
        Knob("enable_batching", bool, help="--enable_batching (TF Serving default: off)"),
        Knob("max_batch_size", int, 1, 1_000_000, True, f"{_UNSET} {_TF.max_batch_size}"),
        Knob("batch_timeout_micros", int, 0, 60_000_000, True, f"{_UNSET} {_TF.batch_timeout_micros}"),
        Knob("num_batch_threads", int, 1, 4096, True, f"{_UNSET} the schedulable CPUs"),
        Knob("max_enqueued_batches", int, 1, 1_000_000, True, f"{_UNSET} {_TF.max_enqueued_batches}"),
        Knob("allowed_batch_sizes", list, 1, 1_000_000, True, f"{_UNSET} any size (no padding)"),
        Knob("intra_op_threads", int, 0, 4096, help="--tensorflow_intra_op_parallelism (0: TF picks)"),
        Knob("inter_op_threads", int, 0, 4096, help="--tensorflow_inter_op_parallelism (0: TF picks)"),
        Knob("gpu_memory_fraction", float, 0.0, 1.0, help="--per_process_gpu_memory_fraction (0: unset)"),
        # Not a TF Serving flag: how the server is started (a core set plus a CFS quota; docker --cpus).
        Knob("cpus", float, 0.0, 4096.0, help="CPU allowance in cores (0: every core; fractions set a CFS quota)"),
        Knob(
            "mixed_precision",
            str,
            help="--mixed_precision (bfloat16 on CPUs with native bf16)",
            choices=MIXED_PRECISION,
        ),
        Knob(
            "model_variant",
            str,
            help="the SavedModel, a TFLite variant (--prefer_tflite_model), or XLA (--xla_cpu_compilation_enabled)",
            choices=MODEL_VARIANTS,
        ),
    )
}


def is_default_config(config: dict[str, Any]) -> bool:
    """Whether a stored config dict is TF Serving's defaults (the baseline every job measures first)."""
    # Every field in its stored form: to_dict leaves some out at their defaults (the variant, the precision), and a
    # TFLite model on default knobs is no baseline.
    plain = ServingConfig()
    defaults = {**dataclasses.asdict(plain), **plain.to_dict()}
    # A knob a stored config lacks (it predates the knob) was at its default.
    return {k: config.get(k, v) for k, v in defaults.items()} == defaults


@dataclass(frozen=True)
class ServingConfig:
    """One concrete serving configuration. Defaults are TensorFlow Serving's own.

    Batching is off, as without --enable_batching; the batching fields default to what TF Serving
    uses when the batching file leaves them unset (TFSERVING_BATCHING_DEFAULTS), so turning batching
    on alone means what `--enable_batching` with an empty batching file means to TF Serving.
    """

    enable_batching: bool = False
    max_batch_size: int = TFSERVING_BATCHING_DEFAULTS.max_batch_size
    batch_timeout_micros: int = TFSERVING_BATCHING_DEFAULTS.batch_timeout_micros
    num_batch_threads: int = field(default_factory=schedulable_cpus)
    max_enqueued_batches: int = TFSERVING_BATCHING_DEFAULTS.max_enqueued_batches
    allowed_batch_sizes: tuple[int, ...] = ()
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    gpu_memory_fraction: float = 0.0
    cpus: float = 0.0
    model_variant: str = SAVEDMODEL
    mixed_precision: str = MIXED_PRECISION[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form; batching fields are omitted when batching is off, the model variant and mixed
        precision when at their defaults (configs stored before them read the same)."""
        out = dataclasses.asdict(self)
        if self.model_variant == SAVEDMODEL:
            out.pop("model_variant")
        if self.mixed_precision == MIXED_PRECISION[0]:
            out.pop("mixed_precision")
        out["allowed_batch_sizes"] = list(self.allowed_batch_sizes)
        if not self.enable_batching:
            for name, knob in KNOBS.items():
                if knob.batching:
                    out.pop(name)
        return out

    def replace(self, **changes: Any) -> ServingConfig:
        """Return a validated copy with some knobs changed."""
        return validate(dataclasses.replace(self, **changes))


def validate(config: ServingConfig) -> ServingConfig:
    """Check cross-knob rules TensorFlow Serving enforces; raise AutotuneError."""
    for name, knob in KNOBS.items():
        value = getattr(config, name)
        if knob.choices and value not in knob.choices:
            raise AutotuneError(f"{name}: {value!r} is not one of {', '.join(knob.choices)}")
        values = value if knob.kind is list else [value] if knob.kind is not str else []
        for v in values:
            if knob.low is not None and knob.high is not None and not knob.low <= v <= knob.high:
                raise AutotuneError(f"{name}: {v} is out of range {_fmt(knob.low)}..{_fmt(knob.high)}")
    sizes = config.allowed_batch_sizes
    if config.enable_batching and sizes:
        if list(sizes) != sorted(set(sizes)):
            raise AutotuneError(f"allowed_batch_sizes: must be strictly increasing, got {list(sizes)}")
        if sizes[-1] != config.max_batch_size:
            raise AutotuneError(
                f"allowed_batch_sizes: last entry ({sizes[-1]}) must equal max_batch_size ({config.max_batch_size})"
            )
    return config


def config_from_dict(values: dict[str, Any]) -> ServingConfig:
    """Rebuild a ServingConfig from a stored config dict (unknown keys ignored), validated."""
    values = {k: v for k, v in values.items() if k in KNOBS}
    if "allowed_batch_sizes" in values:
        values["allowed_batch_sizes"] = tuple(values["allowed_batch_sizes"])
    return validate(ServingConfig(**values))


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def parse_value(name: str, text: str) -> Any:
    """Parse one knob value from its command-line text."""
    if name not in KNOBS:
        raise AutotuneError(f"unknown knob {name!r} (known: {', '.join(KNOBS)})")
    knob = KNOBS[name]
    text = text.strip()
    if knob.kind is str:
        if text not in knob.choices:
            raise AutotuneError(f"{name}: expected one of {', '.join(knob.choices)}, got {text!r}")
        return text
    try:
        if knob.kind is bool:
            lowered = text.lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if knob.kind is int:
            return int(text)
        if knob.kind is float:
            value = float(text)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return value
        items = [t for t in text.replace(";", ",").split(",") if t.strip()]
        return tuple(int(t) for t in items)
    except ValueError:
        kind = {bool: "true/false", int: "an integer", float: "a number", list: "a comma-separated list of integers"}
        raise AutotuneError(f"{name}: expected {kind[knob.kind]}, got {text!r}") from None


def parse_assignments(assignments: list[str], base: ServingConfig | None = None) -> ServingConfig:
    """Build a config from `knob=value` strings on top of `base` (TF Serving defaults).

    Setting any batching knob turns batching on unless enable_batching is given.
    """
    changes: dict[str, Any] = {}
    for item in assignments:
        if "=" not in item:
            raise AutotuneError(f"--set expects knob=value, got {item!r}")
        name, _, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if name in changes:
            raise AutotuneError(f"knob {name!r} is set twice")
        changes[name] = parse_value(name, text)
    if "enable_batching" not in changes and any(KNOBS[n].batching for n in changes):
        changes["enable_batching"] = True
    if changes.get("cpus") and "num_batch_threads" not in changes:
        # TF Serving's default is a batch thread per schedulable core: an allowance has fewer of them.
        changes["num_batch_threads"] = min((base or ServingConfig()).num_batch_threads, whole_cores(changes["cpus"]))
    config = dataclasses.replace(base or ServingConfig(), **changes)
    return validate(config)
