"""Options declared once: a field's default, help, bounds and environment variable live in its declaration;
the command line (cli/common.py `flag`), study files and the code all read them from there."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from autotune.errors import AutotuneError


@dataclass(frozen=True)
class Bounds:
    """A number's allowed range; an open end excludes its value (a timeout of 0 is no timeout)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def problem(self, value: float | None) -> str | None:
        """Why VALUE is out of range, in the words of every error (None: in range, or unset)."""
        if value is None:
            return None
        low_ok = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        high_ok = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return None if low_ok and high_ok else f"must be {self}"

    def __str__(self) -> str:
        lo, hi = _g(self.lo), _g(self.hi)
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {lo}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {hi}"
        if not self.lo_open and not self.hi_open:
            return f"in {lo}..{hi}"
        return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"


def _g(x: float | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class Declared:
    """One option: its default, one-line help, bounds and the environment variable that may set it."""

    default: Any
    help: str
    bounds: Bounds = Bounds()
    env: str | None = None

    def help_text(self) -> str:
        """The help with its default, as the CLI shows it."""
        return self.help if self.default is None else f"{self.help} (default {_g(self.default)})"

    def check(self, flag: str, value: Any) -> None:
        """Raise the one-line error for VALUE of --FLAG out of range."""
        problem = self.bounds.problem(value)
        if problem:
            raise AutotuneError(f"--{flag.replace('_', '-')} {problem}, got {_g(value)}")


def stored_fields(cls: type, stored: dict[str, Any]) -> dict[str, Any]:
    """The entries of STORED (a dataclass CLS's fields as JSON) that CLS still has: a field renamed or removed since
    it was stored takes its default, and one a later version added is left to that version."""
    known = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in stored.items() if k in known}


def field_of(declared: Declared) -> Any:
    """A dataclass field for an option declared on its own (below: those the CLI needs without its class)."""
    return field(default=declared.default, metadata={"option": declared})


def option(
    default: Any,
    help: str,  # noqa: A002  the word every reader expects
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    env: str | None = None,
) -> Any:
    """A dataclass field declared once (see Declared)."""
    return field_of(Declared(default, help, Bounds(lo, hi, lo_open, hi_open), env))


def declared(cls: type, name: str) -> Declared:
    """The declaration of CLS's option NAME."""
    return cls.__dataclass_fields__[name].metadata["option"]  # type: ignore[attr-defined, no-any-return]


def problems(obj: Any) -> dict[str, str]:
    """Each declared field of OBJ whose value is out of its bounds, and why (empty: all in range)."""
    found = {}
    for f in dataclasses.fields(obj):
        if "option" in f.metadata and (problem := f.metadata["option"].bounds.problem(getattr(obj, f.name))):
            found[f.name] = problem
    return found


def checked(obj: Any) -> Any:
    """OBJ, once every declared field is in range; else the first field's one-line error, as a flag."""
    for name in problems(obj):
        declared(type(obj), name).check(name, getattr(obj, name))
    return obj


# Options of the measurement (MeasureSettings) that the command line declares without importing it (it loads
# numpy): the load shape, shared by `bench`, `compare`, `predict` and a study's [load] table, and the ramp's limits.
CONCURRENCY = Declared(None, "fixed closed-loop clients", Bounds(1, 4096))
RATE = Declared(None, "open-loop Poisson arrivals per second", Bounds(0, 1_000_000, lo_open=True))
MAX_CONCURRENCY = Declared(64, "ramp limit", Bounds(1, 4096))
REQUEST_TIMEOUT_S = Declared(
    30.0, "a request slower than this is an error; a server silent this long is hung", Bounds(0, 3600, lo_open=True)
)
# A job's budget: `start`, `schedule add` and a study's [budget].
TRIALS = Declared(40, "trial budget", Bounds(0, lo_open=True))
MINUTES = Declared(60.0, "time budget, minutes", Bounds(0, lo_open=True))
# What a job that must profile its model first spends on it: it only plans the first configs, so fewer repeats than
# `autotune profile` takes (20 s), at least 3 a point; `autotune profile --refresh` measures a fuller one over it.
PROFILE_S = Declared(
    5.0, "seconds of repeats per thread count when a job profiles a model this host has no profile of", Bounds(1)
)
# The accuracy guard a model variant must pass: `models optimize`, a study's [slo] and a job's variants.
MIN_TOP1_AGREEMENT = Declared(0.99, "the guard: share of inputs given the same class", Bounds(0, 1))
