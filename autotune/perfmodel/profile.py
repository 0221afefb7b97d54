"""What one batch costs on this host, as `autotune profile` measured it, and the curves read from it.

A profile holds, per model variant, intra-op thread count and batch size, the wall time of one call
and the CPU it burned (TF's pool threads spin, so CPU/wall can exceed the work's parallelism), plus the
per-request cost of the transport (REST, gRPC) measured against the stand-in, once per served form (the
SavedModel and each variant: the runtime around the call differs, a TFLite interpreter spins no TF pools).
Between measured points, curves interpolate linearly in batch size and in thread count; beyond the
largest measured batch they extrapolate the last per-instance slope (as batch cost is affine at scale).
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from autotune.errors import AutotuneError
from autotune.knobs import SAVEDMODEL

PROFILE_FORMAT = 1


@dataclass(frozen=True)
class BatchCost:
    """One measured point: a call of BATCH instances with THREADS intra-op threads."""

    variant: str
    threads: int
    batch: int
    wall_ms: float  # median over repeats
    wall_ci95_ms: tuple[float, float]
    cpu_ms: float  # process CPU per call (median)
    repeats: int
    wall_sd_log: float = 0.0  # standard deviation of log(wall time): the call-to-call spread


@dataclass(frozen=True)
class Transport:
    """One request's cost outside the model, per protocol and served form, against the stand-in."""

    protocol: str
    wall_ms: float  # request latency minus the model's own call
    server_cpu_ms: float  # server CPU per request beyond the model's
    client_cpu_ms: float  # the load generator's CPU per request
    gil: bool  # whether the server's handling is serialized (the stand-in is Python)
    variant: str = SAVEDMODEL  # the served form measured (profiles before variants had transports: the SavedModel)
    # The part of server_cpu_ms that holds the GIL; None: all of it (see Profile.transport_for).
    gil_cpu_ms: float | None = None

    def held_ms(self) -> float:
        """Server CPU per request serialized by the GIL."""
        if not self.gil:
            return 0.0
        return self.server_cpu_ms if self.gil_cpu_ms is None else min(self.gil_cpu_ms, self.server_cpu_ms)


@dataclass(frozen=True)
class Profile:
    """Batch costs and transport costs of one model on one host."""

    model: str
    content_hash: str
    host_fingerprint: str
    cpus: int
    points: tuple[BatchCost, ...]
    transport: tuple[Transport, ...] = ()
    host: dict[str, Any] = field(default_factory=dict)
    measured_at: str = ""
    seconds: float = 0.0
    # Cores other processes used while each thread count was probed (by thread count): a busy host shows here.
    foreign_cores: dict[str, float] = field(default_factory=dict)
    # Per model variant profiled: its answers against the SavedModel's (models/accuracy.py), or why it failed to build.
    accuracy: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The stand-in's batch op: the CPU a batched request costs beyond its share of a direct call of the batch (each
    # request is a call of its own there), and that median's 95% interval (probe --batch-op); 0 in older profiles.
    batch_op_cpu_ms: float = 0.0
    batch_op_ci95_ms: tuple[float, float] | None = None

    def variants(self) -> list[str]:
        return sorted({p.variant for p in self.points})

    def variant_problem(self, variant: str, min_top1: float | None, max_abs: float | None) -> str | None:
        """Why the model cannot plan VARIANT: not profiled, not built, or failing the accuracy guard; else None."""
        if variant == SAVEDMODEL:
            return None
        figures = self.accuracy.get(variant)
        if figures is None or variant not in self.variants():
            return (figures or {}).get("failed") or "not profiled (autotune profile --variants)"
        return self.guard_problem(variant, min_top1, max_abs)

    def guard_problem(self, variant: str, min_top1: float | None, max_abs: float | None) -> str | None:
        """Why VARIANT's profiled answers fail the accuracy guard; None when they pass or were never checked."""
        from autotune.models.accuracy import Accuracy

        figures = self.accuracy.get(variant)
        if variant == SAVEDMODEL or not figures or "failed" in figures:
            return None
        return Accuracy.from_json(figures).problem(min_top1, max_abs)

    def curve(self, variant: str = "savedmodel") -> CostCurve:
        """The cost curve of VARIANT; a one-line error if it was not profiled."""
        pts = [p for p in self.points if p.variant == variant]
        if not pts:
            raise AutotuneError(f"the profile has no variant {variant!r} (has: {', '.join(self.variants())})")
        return CostCurve(pts)

    def transport_for(self, protocol: str, variant: str = SAVEDMODEL) -> Transport:
        """PROTOCOL's cost when VARIANT serves (the SavedModel's where VARIANT's was not measured).

        The stand-in's request handling is the same Python for every served form, so the part that holds the GIL
        is at most the smallest residual of any form measured; the rest of a form's residual is its runtime's
        (TF's pool threads spinning around a call), which runs beside other requests."""
        forms = [t for t in self.transport if t.protocol == protocol]
        if not forms:
            have = ", ".join(sorted({t.protocol for t in self.transport})) or "none"
            raise AutotuneError(f"the profile has no {protocol} transport (has: {have}); run autotune profile again")
        own = next((t for t in forms if t.variant == variant), None)
        own = own or next((t for t in forms if t.variant == SAVEDMODEL), forms[0])
        return replace(own, gil_cpu_ms=min(t.server_cpu_ms for t in forms))

    def lacks_transport(self, variant: str) -> bool:
        """Whether VARIANT (not the SavedModel) was profiled but its transport was not measured (a profile from
        before they were)."""
        measured = any(t.variant == variant for t in self.transport)
        return variant != SAVEDMODEL and variant in self.variants() and not measured

    def to_json(self) -> dict[str, Any]:
        return {"format": PROFILE_FORMAT, **asdict(self)}

    @staticmethod
    def from_json(doc: dict[str, Any]) -> Profile:
        """Rebuild a stored profile; a malformed one is a one-line error."""
        if not isinstance(doc, dict) or doc.get("format") != PROFILE_FORMAT:
            raise AutotuneError("the stored profile has an unknown format; run autotune profile again")
        try:
            points = tuple(BatchCost(**{**p, "wall_ci95_ms": tuple(p["wall_ci95_ms"])}) for p in doc["points"])
            transport = tuple(Transport(**t) for t in doc.get("transport", ()))
            rest = {k: doc[k] for k in ("model", "content_hash", "host_fingerprint", "cpus")}
            extra = {k: doc[k] for k in ("host", "measured_at", "seconds", "foreign_cores", "accuracy") if k in doc}
            if "batch_op_cpu_ms" in doc:
                extra["batch_op_cpu_ms"] = float(doc["batch_op_cpu_ms"])
                ci = doc.get("batch_op_ci95_ms")
                extra["batch_op_ci95_ms"] = (float(ci[0]), float(ci[1])) if ci is not None else None
            return Profile(**rest, points=points, transport=transport, **extra)
        except (KeyError, TypeError, ValueError) as exc:
            raise AutotuneError(f"the stored profile is malformed ({exc}); run autotune profile again") from None


def _interp(xs: list[float], ys: list[float], x: float, extrapolate: bool) -> float:
    """Piecewise-linear Y at X; beyond the ends, the end slope (EXTRAPOLATE) or the end value."""
    if len(xs) == 1:
        return ys[0] * (x / xs[0] if extrapolate else 1.0)
    i = bisect.bisect_left(xs, x)
    if i < len(xs) and xs[i] == x:
        return ys[i]
    if i == 0:
        lo, hi = 0, 1
        if not extrapolate:
            return ys[0]
    elif i == len(xs):
        lo, hi = len(xs) - 2, len(xs) - 1
        if not extrapolate:
            return ys[-1]
    else:
        lo, hi = i - 1, i
    slope = (ys[hi] - ys[lo]) / (xs[hi] - xs[lo])
    return max(ys[lo] + slope * (x - xs[lo]), 1e-6)


class CostCurve:
    """Wall time and CPU of one call as functions of batch size and intra-op threads, from measured points."""

    serial_device = False  # calls run on the host's cores, side by side

    def __init__(self, points: list[BatchCost]) -> None:
        self.threads = sorted({p.threads for p in points})
        self._by_threads: dict[int, tuple[list[float], list[float], list[float]]] = {}
        self._spread: dict[int, tuple[list[float], list[float]]] = {}
        for t in self.threads:
            pts = sorted((p for p in points if p.threads == t), key=lambda p: p.batch)
            self._by_threads[t] = ([p.batch for p in pts], [p.wall_ms for p in pts], [p.cpu_ms for p in pts])
            self._spread[t] = ([p.batch for p in pts], [p.wall_sd_log for p in pts])
        self._cache: dict[tuple[int, int], tuple[float, float]] = {}

    def spread(self, batch: int, threads: int) -> float:
        """The call-to-call spread (sd of log wall time) at the nearest measured thread count."""
        t = min(self.threads, key=lambda x: abs(x - threads))
        xs, sd = self._spread[t]
        return _interp(xs, sd, batch, False)

    def _at_threads(self, t: int, batch: int) -> tuple[float, float]:
        xs, wall, cpu = self._by_threads[t]
        return _interp(xs, wall, batch, True), _interp(xs, cpu, batch, True)

    def cost(self, batch: int, threads: int) -> tuple[float, float]:
        """(wall ms, CPU ms) of one call of BATCH with THREADS intra-op threads.

        Threads between measured counts interpolate; beyond the largest, Amdahl's law fitted on the two
        largest counts carries the speed-up on, and CPU grows with the threads (each spins while waiting)."""
        key = (batch, threads)
        if key in self._cache:
            return self._cache[key]
        ts = self.threads
        if threads in self._by_threads:
            out = self._at_threads(threads, batch)
        elif threads < ts[0]:
            out = self._at_threads(ts[0], batch)
        elif threads > ts[-1]:
            out = self._amdahl(batch, threads)
        else:
            j = bisect.bisect_left(ts, threads)
            (w0, c0), (w1, c1) = self._at_threads(ts[j - 1], batch), self._at_threads(ts[j], batch)
            f = (threads - ts[j - 1]) / (ts[j] - ts[j - 1])
            out = (w0 + f * (w1 - w0), c0 + f * (c1 - c0))
        self._cache[key] = out
        return out

    def _amdahl(self, batch: int, threads: int) -> tuple[float, float]:
        top = self.threads[-1]
        w_top, c_top = self._at_threads(top, batch)
        if len(self.threads) == 1:
            return w_top, c_top
        low = self.threads[-2]
        w_low, _ = self._at_threads(low, batch)
        serial = serial_fraction(w_low, low, w_top, top)
        w1 = w_top / (serial + (1 - serial) / top)  # the one-thread time Amdahl implies
        wall = w1 * (serial + (1 - serial) / threads)
        busy = c_top / w_top  # cores busy per call at TOP threads; more threads keep their share
        return wall, wall * min(threads, busy * threads / top)


def serial_fraction(w_a: float, a: int, w_b: float, b: int) -> float:
    """Amdahl's serial fraction s from wall times at A and B threads: w(n) = w1 * (s + (1 - s) / n)."""
    # w_a / w_b = (s + (1-s)/a) / (s + (1-s)/b)  ->  solve for s
    r = w_a / w_b
    num = (1 / a) - r / b
    den = r * (1 - 1 / b) - (1 - 1 / a)
    if den == 0:
        return 1.0
    return min(max(num / den, 0.0), 1.0)


@dataclass(frozen=True)
class DeviceCurve:
    """An accelerator's service curve: one call at a time on the device, an affine cost in the batch size,
    and a little host CPU to feed it. Threads do not change it. No GPU was measured here: callers say where
    its figures come from."""

    fixed_ms: float
    per_item_ms: float
    host_cpu: float = 0.3  # cores the host spends per running call (launches, copies)
    serial_device = True

    def cost(self, batch: int, threads: int) -> tuple[float, float]:
        wall = self.fixed_ms + self.per_item_ms * batch
        return wall, wall * self.host_cpu

    def spread(self, batch: int, threads: int) -> float:
        return 0.05
