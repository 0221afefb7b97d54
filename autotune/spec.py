"""Study files (TOML): what to tune, under which SLO, for how long. Validated on load.

Every error names the file, the key and the reason on one line, and nothing is
stored before a study is valid.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autotune.cost import PRICE_DEFAULTS
from autotune.errors import AutotuneError
from autotune.knobs import KNOBS, SAVEDMODEL
from autotune.models.accuracy import DEFAULT_MIN_TOP1_AGREEMENT
from autotune.options import CONCURRENCY, MINUTES, PROFILE_S, RATE, TRIALS, Declared, field_of, stored_fields
from autotune.servers.backends import BACKEND_NAMES
from autotune.windows import WindowOptions

OBJECTIVES = (
    "throughput_rps",
    "latency_p99_ms",
    "cpu_cores",
    "gpu_mem_mb",
    "rss_mb",
    "cost_per_1k_requests",
    "load_time_s",  # a model variant loads faster or slower: worth minimizing where servers scale from zero
)
DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("autotune", "tpe", "nsga2", "random", "grid")
# Where the `autotune` sampler's first configs come from: the batching guide's rules, or the performance model's
# predicted front (autotune plan; the guide's rules again when this host has no profile of the model).
SEED_SOURCES = ("guide", "model")
_TOP_KEYS = {
    "model",
    "backend",
    "slo",
    "objectives",
    "space",
    "budget",
    "load",
    "sampler",
    "seed",
    "seeds",
    "signature",
    "cost",
    "mix",
    "min_effect",
}
# [slo] bounds on measured metrics besides the p99 and the error rate: key -> (metric, which side is allowed).
METRIC_LIMITS: dict[str, tuple[str, str]] = {
    "min_throughput_rps": ("throughput_rps", "min"),
    "max_cpu_cores": ("cpu_cores", "max"),
    "max_rss_mb": ("rss_mb", "max"),
    "max_gpu_mem_mb": ("gpu_mem_mb", "max"),
}


@dataclass(frozen=True)
class KnobSpec:
    """How a study narrows one knob: a range, a list of choices, or a fixed value."""

    low: float | None = None
    high: float | None = None
    log: bool | None = None
    choices: tuple[Any, ...] | None = None
    value: Any = None


@dataclass(frozen=True)
class Study:
    """A validated study."""

    source: str
    model: str
    backend: str = "auto"
    signature: str = "serving_default"
    slo_p99_ms: float | None = 500.0
    max_error_rate: float = 0.001
    limits: dict[str, float] = field(default_factory=dict)  # METRIC_LIMITS keys -> bounds
    # The accuracy guard every model variant must pass against the SavedModel (models/accuracy.py).
    min_top1_agreement: float | None = DEFAULT_MIN_TOP1_AGREEMENT
    max_abs_error: float | None = None
    objectives: dict[str, str] = field(
        default_factory=lambda: {"throughput_rps": "maximize", "latency_p99_ms": "minimize"}
    )
    space: dict[str, KnobSpec] = field(default_factory=dict)
    trials: int = field_of(TRIALS)
    minutes: float = field_of(MINUTES)
    # After the search: fresh servers per side when re-measuring the front against the defaults (0: off).
    confirm_repeats: int = 3  # the least rounds: below 3 a side the spread rests on two points
    # Rounds go on until every objective's 95% interval is within +-confirm_precision, or this many.
    confirm_max_repeats: int = 10
    confirm_precision: float = 0.05
    profile_s: float = field_of(PROFILE_S)  # [budget] profile_s: a first job's profile, per thread count
    # [min_effect]: per metric, the change below which no verdict is better/worse (a fraction: 0.02 = 2%).
    min_effect: dict[str, float] = field(default_factory=dict)
    protocol: str = "rest"
    concurrency: int | None = None
    rate: float | None = None
    sampler: str = "autotune"  # chosen by benchmarks/search_efficiency.py (see RESULTS.md)
    # SEED_SOURCES: the model's predicted front (profiled first when this host has no profile), then the guide's seeds
    # it did not pick; "guide" is the batching guide's alone, as before the live jobs of issue 26 showed the model's
    # reach the best in fewer trials.
    seeds: str = "model"
    seed: int | None = None
    windows: WindowOptions = field(default_factory=WindowOptions)
    requests: str | None = None  # [load] requests: a request file (absolute; relative ones are to the study file)
    batch: int | None = None  # [load] batch: instances per request
    # [mix]: several models served by one server, each with its share of the requests (model among them).
    mix: dict[str, float] | None = None
    # [cost]: what an hour of a core and of a GiB of GPU memory costs (cost_per_1k_requests prices them).
    core_hour_price: float = PRICE_DEFAULTS.core_hour
    gpu_gib_hour_price: float = PRICE_DEFAULTS.gpu_gib_hour

    @property
    def model_variants(self) -> tuple[str, ...]:
        """The model variants the space searches beside the SavedModel (none without a model_variant knob)."""
        knob = self.space.get("model_variant")
        return tuple(v for v in (knob.choices or ()) if v != SAVEDMODEL) if knob else ()


def confirm_repeats_problem(repeats: int) -> str | None:
    """Why REPEATS cannot be a confirm_repeats (a spread needs three figures a side), or None."""
    return None if repeats == 0 or 3 <= repeats <= 20 else f"must be 0 (off) or 3..20, got {repeats}"


_BARE_KEY = re.compile(r"[A-Za-z0-9_.\-]+")


class _Checker:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, reason: str) -> AutotuneError:
        # A key TOML had to quote (spaces, newlines) is shown quoted, so the error stays one line.
        shown = key if _BARE_KEY.fullmatch(key) else repr(key)
        return AutotuneError(f"{self.source}: {shown}: {reason}")

    def table(self, doc: dict[str, Any], key: str) -> dict[str, Any]:
        value = doc.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return value

    def number(self, value: Any, key: str, positive: bool = False, integer: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(key, f"must be a number, got {value!r}")
        if integer and not float(value).is_integer():
            raise self.fail(key, f"must be an integer, got {value!r}")
        if positive and value <= 0:
            raise self.fail(key, f"must be > 0, got {value!r}")
        return value

    def string(self, value: Any, key: str, allowed: tuple[str, ...] | None = None) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {value!r}")
        if allowed is not None and value not in allowed:
            raise self.fail(key, f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def unknown(self, table: dict[str, Any], allowed: set[str], prefix: str) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(f"{prefix}{key}", f"unknown key (known: {', '.join(sorted(allowed))})")


def _knob_spec(c: _Checker, name: str, raw: Any) -> KnobSpec:
    key = f"space.{name}"
    if name not in KNOBS:
        raise c.fail(key, f"unknown knob (known: {', '.join(KNOBS)})")
    if not isinstance(raw, dict):
        raise c.fail(key, "must be a table with low/high[/log], choices, or value")
    c.unknown(raw, {"low", "high", "log", "choices", "value"}, f"{key}.")
    knob = KNOBS[name]
    forms = [("value" in raw), ("choices" in raw), ("low" in raw or "high" in raw)]
    if sum(forms) != 1:
        raise c.fail(key, "give exactly one of: value, choices, or low and high")

    def check(v: Any, where: str) -> Any:
        if knob.kind is str:
            if v not in knob.choices:
                raise c.fail(where, f"must be one of {', '.join(knob.choices)}, got {v!r}")
            return v
        if knob.kind is bool:
            if not isinstance(v, bool):
                raise c.fail(where, f"must be true or false, got {v!r}")
            return v
        if knob.kind is list:
            if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                raise c.fail(where, f"must be a list of integers, got {v!r}")
            return tuple(v)
        c.number(v, where, integer=knob.kind is int)
        if knob.low is not None and knob.high is not None and not knob.low <= v <= knob.high:
            raise c.fail(where, f"{v} is out of range {knob.low:g}..{knob.high:g}")
        return int(v) if knob.kind is int else float(v)

    if "value" in raw:
        return KnobSpec(value=check(raw["value"], f"{key}.value"))
    if "choices" in raw:
        choices = raw["choices"]
        if not isinstance(choices, list) or not choices:
            raise c.fail(f"{key}.choices", "must be a non-empty list")
        return KnobSpec(choices=tuple(check(v, f"{key}.choices") for v in choices))
    if knob.kind in (bool, list, str):
        raise c.fail(key, "takes value or choices, not a range")
    if "low" not in raw or "high" not in raw:
        raise c.fail(key, "a range needs both low and high")
    low, high = check(raw["low"], f"{key}.low"), check(raw["high"], f"{key}.high")
    if low > high:
        raise c.fail(key, f"low ({low}) > high ({high})")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise c.fail(f"{key}.log", f"must be true or false, got {log!r}")
    if log and high <= 0:
        raise c.fail(f"{key}.log", "a log range needs high > 0")
    return KnobSpec(low=low, high=high, log=log)


def parse_study(doc: dict[str, Any], source: str) -> Study:
    """Validate a parsed TOML document into a Study (each table by its own reader, in the document's order)."""
    c = _Checker(source)
    c.unknown(doc, _TOP_KEYS, "")
    if "model" not in doc:
        raise c.fail("model", "is required (a built-in name or a SavedModel base path)")
    out: dict[str, Any] = {"source": source, "model": c.string(doc["model"], "model")}
    if "backend" in doc:
        out["backend"] = c.string(doc["backend"], "backend", BACKEND_NAMES)
    if "signature" in doc:
        out["signature"] = c.string(doc["signature"], "signature")
    if "seed" in doc:
        out["seed"] = int(c.number(doc["seed"], "seed", integer=True))
    out |= _slo(c, c.table(doc, "slo"))
    if "objectives" in doc:
        out["objectives"] = _objectives(c, c.table(doc, "objectives"))
    out["space"] = {name: _knob_spec(c, name, raw) for name, raw in c.table(doc, "space").items()}
    out |= _budget(c, c.table(doc, "budget"))
    out["min_effect"] = _min_effect(c, c.table(doc, "min_effect"))
    out |= _load(c, c.table(doc, "load"), source)
    mix = c.table(doc, "mix")
    if mix:
        out["mix"] = _mix(c, mix, out["model"], out["space"])
    out |= _cost(c, c.table(doc, "cost"))
    if "sampler" in doc:
        out["sampler"] = c.string(doc["sampler"], "sampler", SAMPLERS)
    if "seeds" in doc:
        out["seeds"] = c.string(doc["seeds"], "seeds", SEED_SOURCES)
    return Study(**out)


def _fraction(c: _Checker, value: Any, key: str) -> float:
    """A number in 0..1, or a one-line error naming KEY."""
    x = c.number(value, key)
    if not 0 <= x <= 1:
        raise c.fail(key, f"must be in 0..1, got {x!r}")
    return float(x)


def _slo(c: _Checker, slo: dict[str, Any]) -> dict[str, Any]:
    c.unknown(slo, {"latency_p99_ms", "max_error_rate", "min_top1_agreement", "max_abs_error", *METRIC_LIMITS}, "slo.")
    out: dict[str, Any] = {
        "limits": {k: float(c.number(slo[k], f"slo.{k}", positive=True)) for k in METRIC_LIMITS if k in slo}
    }
    if "latency_p99_ms" in slo:
        out["slo_p99_ms"] = float(c.number(slo["latency_p99_ms"], "slo.latency_p99_ms", positive=True))
    if "max_error_rate" in slo:
        out["max_error_rate"] = _fraction(c, slo["max_error_rate"], "slo.max_error_rate")
    if "min_top1_agreement" in slo:
        out["min_top1_agreement"] = _fraction(c, slo["min_top1_agreement"], "slo.min_top1_agreement")
    if "max_abs_error" in slo:
        out["max_abs_error"] = float(c.number(slo["max_abs_error"], "slo.max_abs_error", positive=True))
    return out


def _objectives(c: _Checker, objectives: dict[str, Any]) -> dict[str, str]:
    if not objectives:
        raise c.fail("objectives", "needs at least one objective")
    for name, direction in objectives.items():
        if name not in OBJECTIVES:
            raise c.fail(f"objectives.{name}", f"unknown objective (known: {', '.join(OBJECTIVES)})")
        c.string(direction, f"objectives.{name}", DIRECTIONS)
    return dict(objectives)


def _declared(
    c: _Checker, table: dict[str, Any], prefix: str, options: tuple[tuple[str, Declared, type], ...]
) -> dict[str, Any]:
    """TABLE's values of declared OPTIONS (key, declaration, int or float), each checked against its bounds."""
    out = {}
    for key, declared, kind in options:
        if key in table:
            value = kind(c.number(table[key], f"{prefix}.{key}", integer=kind is int))
            if problem := declared.bounds.problem(value):
                raise c.fail(f"{prefix}.{key}", f"{problem}, got {table[key]!r}")
            out[key] = value
    return out


def _budget(c: _Checker, budget: dict[str, Any]) -> dict[str, Any]:
    known = {"trials", "minutes", "confirm_repeats", "confirm_max_repeats", "confirm_precision", "profile_s"}
    c.unknown(budget, known, "budget.")
    out: dict[str, Any] = {}
    # The same bounds as --trials and --minutes: declared once (autotune/options.py).
    declared = (("trials", TRIALS, int), ("minutes", MINUTES, float), ("profile_s", PROFILE_S, float))
    out.update(_declared(c, budget, "budget", declared))
    if "confirm_repeats" in budget:
        repeats = int(c.number(budget["confirm_repeats"], "budget.confirm_repeats", integer=True))
        problem = confirm_repeats_problem(repeats)
        if problem:
            raise c.fail("budget.confirm_repeats", problem)
        out["confirm_repeats"] = repeats
    if "confirm_max_repeats" in budget:
        most = int(c.number(budget["confirm_max_repeats"], "budget.confirm_max_repeats", integer=True))
        if not max(3, out.get("confirm_repeats", 3)) <= most <= 50:
            raise c.fail("budget.confirm_max_repeats", f"must be in confirm_repeats..50 (and >= 3), got {most}")
        out["confirm_max_repeats"] = most
    if "confirm_precision" in budget:
        precision = float(c.number(budget["confirm_precision"], "budget.confirm_precision", positive=True))
        if precision >= 1:
            raise c.fail("budget.confirm_precision", f"must be a fraction below 1 such as 0.05, got {precision}")
        out["confirm_precision"] = precision
    return out


def _min_effect(c: _Checker, min_effect: dict[str, Any]) -> dict[str, float]:
    for name, value in min_effect.items():
        if name not in OBJECTIVES:
            raise c.fail(f"min_effect.{name}", f"unknown metric (known: {', '.join(OBJECTIVES)})")
        threshold = float(c.number(value, f"min_effect.{name}"))
        if not 0 <= threshold < 1:
            raise c.fail(f"min_effect.{name}", f"must be a fraction in [0, 1) such as 0.02, got {threshold}")
    return {k: float(v) for k, v in min_effect.items()}


def _load(c: _Checker, load: dict[str, Any], source: str) -> dict[str, Any]:
    window_keys = set(WindowOptions.__dataclass_fields__)
    c.unknown(load, {"protocol", "concurrency", "rate", "requests", "batch", *window_keys}, "load.")
    out: dict[str, Any] = {}
    if "requests" in load:
        path = Path(c.string(load["requests"], "load.requests")).expanduser()
        out["requests"] = str(path if path.is_absolute() else (Path(source).parent / path).resolve())
    if "batch" in load:
        out["batch"] = int(c.number(load["batch"], "load.batch", positive=True, integer=True))
    if "protocol" in load:
        out["protocol"] = c.string(load["protocol"], "load.protocol", ("rest", "grpc"))
    if "concurrency" in load and "rate" in load:
        raise c.fail("load", "concurrency and rate are exclusive")
    # The same bounds as --concurrency and --rate: declared once (autotune/options.py).
    out.update(_declared(c, load, "load", (("concurrency", CONCURRENCY, int), ("rate", RATE, float))))
    windows = {
        k: int(c.number(load[k], f"load.{k}", integer=True))
        if k == "max_windows"
        else float(c.number(load[k], f"load.{k}"))
        for k in window_keys & set(load)
    }
    out["windows"] = WindowOptions(**windows)
    for key, problem in out["windows"].problems().items():
        raise c.fail(f"load.{key}", f"{problem}, got {load[key]!r}")
    return out


def _mix(c: _Checker, mix: dict[str, Any], model: str, space: dict[str, KnobSpec]) -> dict[str, float]:
    shares = {spec: float(c.number(share, f"mix.{spec}", positive=True)) for spec, share in mix.items()}
    if model not in shares:
        raise c.fail("mix", f"must give the study's model {model!r} its share too")
    if len(shares) < 2:
        raise c.fail("mix", "names one model; a mix serves several (or drop [mix])")
    if "model_variant" in space:
        raise c.fail("space.model_variant", "a mix serves its models' SavedModels (variants are for one model)")
    return shares


def _cost(c: _Checker, cost: dict[str, Any]) -> dict[str, float]:
    c.unknown(cost, {"core_hour", "gpu_gib_hour"}, "cost.")
    out = {}
    for key in ("core_hour", "gpu_gib_hour"):
        if key in cost:
            price = c.number(cost[key], f"cost.{key}")
            if price < 0:
                raise c.fail(f"cost.{key}", f"must be >= 0, got {price!r}")
            out[f"{key}_price"] = float(price)
    return out


def variant_names(text: str) -> list[str]:
    """The model variants of a comma-separated --variants value; a one-line error for an unknown or empty one."""
    return known_variants([v.strip() for v in text.split(",") if v.strip()])


def known_variants(variants: list[str]) -> list[str]:
    """VARIANTS, or a one-line error when one is unknown or there are none."""
    from autotune.knobs import MODEL_VARIANTS

    unknown = [v for v in variants if v not in MODEL_VARIANTS]
    if unknown or not variants:
        raise AutotuneError(f"--variants: expected some of {', '.join(MODEL_VARIANTS[1:])}, got {','.join(variants)!r}")
    return variants


def with_variants(study: Study, variants: list[str]) -> Study:
    """STUDY searching the model VARIANTS beside the SavedModel (`start --variants`): one-line errors."""
    known_variants(variants)
    if study.mix:
        raise AutotuneError("--variants: a mix serves its models' SavedModels (variants are for one model)")
    choices = (SAVEDMODEL, *dict.fromkeys(v for v in variants if v != SAVEDMODEL))
    return replace(study, space={**study.space, "model_variant": KnobSpec(choices=choices)})


def with_mixed_precision(study: Study, bf16_problem: str | None) -> Study:
    """STUDY searching bfloat16 mixed precision beside float32 (`start --mixed-precision`); BF16_PROBLEM: why this
    host should not (cpufeatures.bf16_problem), a one-line error."""
    from autotune.knobs import MIXED_PRECISION

    if bf16_problem:
        raise AutotuneError(f"--mixed-precision: {bf16_problem}")
    return replace(study, space={**study.space, "mixed_precision": KnobSpec(choices=MIXED_PRECISION)})


def load_study(path: Path) -> Study:
    """Read and validate a study file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AutotuneError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AutotuneError(f"{path}: (syntax): {exc}") from None
    return parse_study(doc, str(path))


def studies_dirs() -> list[Path]:
    """Where `--model NAME` looks for NAME.toml: ./studies, then the studies shipped with autotune."""
    return [Path.cwd() / "studies", Path(__file__).resolve().parent.parent / "studies"]


def study_for_model(model: str) -> Study:
    """studies/MODEL.toml when there is one, else the default study for MODEL."""
    if "/" not in model and not model.startswith("."):
        for directory in studies_dirs():
            candidate = directory / f"{model}.toml"
            if candidate.is_file():
                study = load_study(candidate)
                return study
    return Study(source="(defaults)", model=model)


def study_from_dict(values: dict[str, Any]) -> Study:
    """Rebuild a validated Study stored as a dict (a queued job's study); a field this version no longer has
    is dropped, rather than making every stored job unreadable."""
    fields = stored_fields(Study, values)
    space = {}
    for name, knob in (values.get("space") or {}).items():
        knob = dict(knob)
        if knob.get("choices") is not None:
            knob["choices"] = tuple(knob["choices"])
        space[name] = KnobSpec(**knob)
    fields["space"] = space
    # Absent in jobs stored before windows existed; a field a later version added is left to that version.
    fields["windows"] = WindowOptions(**stored_fields(WindowOptions, values.get("windows") or {}))
    return Study(**fields)
