"""The load levels of one trial: warm-up, windows until they agree, the ramp, and the operating point."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from autotune.cost import cost_per_1k_requests
from autotune.cpulimit import CpuPlan
from autotune.errors import TrialError
from autotune.load.client import LoadGenerator
from autotune.load.generator import drain_s
from autotune.load.stats import (
    max_of_present,
    mean_ci95,
    mean_of_present,
    percentiles,
    quantile_ci95,
    round_figure,
    spread,
    stable_span,
)
from autotune.measure.failures import exit_reason
from autotune.measure.results import LevelResult, TrialResult
from autotune.measure.settings import MeasureSettings
from autotune.monitor import ResourceMonitor
from autotune.servers.process import ServerProcess
from autotune.servers.scrape import ServerCounters
from autotune.states import FailureReason
from autotune.traffic.requests import RequestSet


def _aggregate(
    mode: str, value: float, windows: list[dict[str, Any]], span: int | None, s: MeasureSettings
) -> LevelResult:
    """The level over its stable SPAN of windows, or over the last K when it never stabilised (SPAN None)."""
    last = windows[-(span or s.stable_windows) :]
    latencies = [lat for w in last for lat in w["latencies_ms"]]
    pct = percentiles(latencies)
    ok = sum(w["ok"] for w in last)
    errors = sum(w["errors"] for w in last)
    censored = sum(w.get("censored", 0) for w in last)

    def mean(key: str) -> float | None:
        return mean_of_present([w.get(key) for w in last])

    def peak(key: str) -> float | None:
        return max_of_present([w.get(key) for w in last])

    client_cpu = max(w["client_cpu_cores"] for w in last)
    return LevelResult(
        mode=mode,
        concurrency=int(value) if mode == "closed" else None,
        rate=float(value) if mode == "open" else None,
        stable=span is not None,
        windows=[{k: v for k, v in w.items() if k != "latencies_ms"} for w in windows],
        throughput_rps=sum(w["throughput_rps"] for w in last) / len(last),
        latency_p50_ms=pct["p50"],
        latency_p90_ms=pct["p90"],
        latency_p99_ms=pct["p99"],
        error_rate=errors / (ok + errors) if ok + errors else 1.0,
        cpu_cores=mean("cpu_cores"),
        rss_mb=peak("rss_mb"),
        rss_mean_mb=mean("rss_mean_mb"),
        gpu_util_pct=mean("gpu_util_pct"),
        gpu_mem_mb=peak("gpu_mem_mb"),
        gpu_power_w=mean("gpu_power_w"),
        foreign_cores=mean("foreign_cores"),
        client_cpu_cores=client_cpu,
        client_saturated=client_cpu >= s.client_saturation_cores,
        requests=ok,
        censored=censored,
        dropped=sum(w.get("dropped", 0) for w in last),
        windows_used=len(last),
        throughput_ci95=mean_ci95([w["throughput_rps"] for w in last]),
        latency_p99_ci95=quantile_ci95(latencies),
        offered_rps=mean("offered_rps") if mode == "open" else None,
    )


class LevelRunner:
    """Drives a trial's load levels on its live generator and reads their samples from its monitor."""

    def __init__(
        self,
        server: ServerProcess,
        monitor: ResourceMonitor,
        gen: LoadGenerator,
        settings: MeasureSettings,
        deadline: float,
        progress: Callable[[str], None],
        scraper: Callable[[], ServerCounters | None] | None = None,
    ) -> None:
        self.server, self.monitor, self.gen = server, monitor, gen
        self.settings, self.deadline, self.progress = settings, deadline, progress
        self.scraper = scraper
        self.level_id = 0

    def _check_server(self) -> None:
        if not self.server.alive():
            message = f"server died during measurement: {self.server.last_error_line()}"
            raise TrialError(exit_reason(self.server), message)

    def _start(self, mode: str, value: float, **window: float) -> None:
        self.level_id += 1
        if mode == "closed":
            self.gen.closed_loop(int(value), self.level_id, **window)
        else:
            self.gen.open_loop(float(value), self.level_id, **window)

    def _windows(self, window_s: float) -> Any:
        """Yield this level's windows as they come; raise on a dead, hung or silent server."""
        drain = drain_s(window_s, self.settings.request_timeout_s)
        wait = window_s + self.settings.warmup_s + drain + self.settings.request_timeout_s
        # A live server that answers nothing for longer than a request may take is hung (SIGSTOP,
        # deadlock): a timeout, not a measurement of zero throughput.
        last_answer = time.monotonic()
        while True:
            if time.monotonic() > self.deadline:
                raise TrialError(FailureReason.timeout, f"trial exceeded {self.settings.trial_timeout_s:.0f}s")
            event = self.gen.next_event(wait)
            self._check_server()
            if event.get("level") != self.level_id:
                continue  # a late window of the previous level
            if event["event"] == "level_done":
                return
            if event["event"] != "window":
                continue
            if event["ok"]:
                last_answer = time.monotonic()
            elif time.monotonic() - last_answer > self.settings.request_timeout_s + drain + window_s:
                raise TrialError(
                    FailureReason.timeout,
                    f"server stopped answering: no request succeeded for {time.monotonic() - last_answer:.0f}s "
                    f"(request timeout {self.settings.request_timeout_s:g}s)",
                )
            yield event

    def warm_up(self) -> tuple[float, bool]:
        """Closed loop c=1 in short windows until two in a row agree on p50 within tolerance, bounded.

        What TF Serving's --enable_model_warmup does before it reports AVAILABLE: first requests pay for
        graph tracing and allocation. Returns (seconds it took, whether the latency settled).
        """
        started = time.monotonic()
        w = self.settings.model_warmup_windows_s
        cap = max(2, int(self.settings.model_warmup_max_s / w))
        self._start("closed", 1, window_s=w, warmup_s=0.0, max_windows=cap)
        previous: float | None = None
        settled = False
        for event in self._windows(w):
            p50 = event["latency_ms"]["p50"]
            if p50 is not None and previous is not None and spread([previous, p50]) <= self.settings.tolerance:
                settled = True
                break
            previous = p50
        self.gen.idle()
        took = time.monotonic() - started
        self.progress(f"model warm-up {'settled' if settled else 'did not settle'} after {took:.1f}s")
        return took, settled

    def measure(self, mode: str, value: float, need: int) -> LevelResult:
        """Drive one load level until stable with NEED requests; once more if it does not stabilise."""
        level = self._measure_once(mode, value, need)
        if not level.stable and self.settings.remeasure_unstable:
            self.progress("unstable: measuring the level once more")
            level = self._measure_once(mode, value, need)
            level.remeasured = True
        return level

    def _measure_once(self, mode: str, value: float, need: int) -> LevelResult:
        before = self.scraper() if self.scraper else None
        throttled_before = self.server.throttling()
        self._start(mode, value)
        label = f"c={int(value)}" if mode == "closed" else f"rate={value:g}/s"
        windows: list[dict[str, Any]] = []
        span: int | None = None
        for event in self._windows(self.settings.window_s):
            res = self.monitor.summary(event["start"], event["end"])
            event.update(
                cpu_cores=res.cpu_cores,
                rss_mb=res.rss_mb,
                rss_mean_mb=res.rss_mean_mb,
                foreign_cores=res.foreign_cores,
                gpu_util_pct=res.gpu_util_pct,
                gpu_mem_mb=res.gpu_mem_mb,
                gpu_power_w=res.gpu_power_w,
            )
            windows.append(event)
            p99 = event["latency_ms"]["p99"]
            self.progress(
                f"{label} window {len(windows)}: {event['throughput_rps']:.1f} rps, "
                f"p99 {p99 if p99 is None else round(p99, 1)} ms, errors {event['errors']}"
            )
            span = stable_span(
                windows, self.settings.stable_windows, self.settings.tolerance, self.settings.p99_tolerance, need
            )
            if span is not None:
                break
        self.gen.idle()
        if not windows:
            raise TrialError(FailureReason.client_failed, "load generator produced no windows")
        level = _aggregate(mode, value, windows, span, self.settings)
        throttled_after = self.server.throttling()
        if throttled_before is not None and throttled_after is not None:
            level.throttled_periods = throttled_after[0] - throttled_before[0]
            level.throttled_s = round(throttled_after[1] - throttled_before[1], 3)
        after = self.scraper() if self.scraper else None
        if before is not None and after is not None:
            # The server's own count over the level (warm-up and drain included) must cover the
            # client's: fewer would mean the generator counted answers the server never gave.
            level.server = after.since(before)
            level.server["client_requests"] = sum(w["ok"] + w["errors"] for w in windows)
            # Every answer of the level, warm-up included, as the server's own count spans it (the last
            # window's count; requests in flight then are at most the concurrency).
            level.server["client_answered"] = windows[-1].get("level_answered")
        return level


def operating_point(levels: list[LevelResult], s: MeasureSettings) -> tuple[LevelResult, bool]:
    """The best-throughput trustworthy level within the SLO and error limit; (level, slo_met).

    Stable levels are preferred: an unstable level is chosen only when no stable one qualifies.
    """
    good = [
        lv
        for lv in levels
        if lv.error_rate <= s.max_error_rate
        and lv.delivered(s.min_achieved_fraction)
        and (s.slo_ms is None or (lv.latency_p99_ms is not None and lv.latency_p99_ms <= s.slo_ms))
    ]
    trusted = [lv for lv in good if lv.stable] or good
    if trusted:
        return max(trusted, key=lambda lv: lv.throughput_rps), True
    return levels[-1] if s.rate is not None else levels[0], False


def run_levels(runner: LevelRunner, s: MeasureSettings) -> tuple[list[LevelResult], list[LevelResult]]:
    """Unloaded level first, then the fixed load or the ramp.

    Returns (every level measured, unloaded first; the levels that may be the operating point).
    Without the unloaded level, levels[0] is the fixed load itself.
    """
    need = s.min_requests
    if not s.measure_unloaded and (s.rate is not None or s.concurrency is not None):
        mode, value = ("open", s.rate) if s.rate is not None else ("closed", s.concurrency or 1)
        level = runner.measure(mode, value, need)  # type: ignore[arg-type]
        return [level], [level]
    fixed_c1 = s.rate is None and s.concurrency == 1
    unloaded = runner.measure("closed", 1, need if fixed_c1 else s.min_requests_unloaded)
    levels = [unloaded]
    if s.rate is not None:
        levels.append(runner.measure("open", s.rate, need))
        return levels, levels[1:]
    if s.concurrency is not None:
        if s.concurrency != 1:
            levels.append(runner.measure("closed", s.concurrency, need))
        return levels, levels[-1:]
    best = unloaded
    concurrency = 1
    while concurrency * 2 <= s.max_concurrency:
        if s.slo_ms is not None and levels[-1].latency_p99_ms is not None and levels[-1].latency_p99_ms > s.slo_ms:
            break  # the SLO broke: more load only makes it worse
        concurrency *= 2
        level = runner.measure("closed", concurrency, need)
        levels.append(level)
        if level.throughput_rps < best.throughput_rps * (1 + s.min_growth) and not (s.ramp_to_slo and s.slo_ms):
            break  # saturated: throughput stopped growing
        best = max(best, level, key=lambda lv: lv.throughput_rps)
    return levels, levels


def measure_point(
    result: TrialResult, runner: LevelRunner, requests: RequestSet, load_time_s: float | None, cpu: CpuPlan | None
) -> LevelResult:
    """Warm the model up, run the levels, fill RESULT's levels, metrics and traffic; return the operating point."""
    settings = runner.settings
    warmup = runner.warm_up()
    result.levels, candidates = run_levels(runner, settings)
    point, slo_met = operating_point(candidates, settings)
    unloaded = result.levels[0] if settings.measure_unloaded else None
    result.metrics = _metrics(point, unloaded, load_time_s, slo_met, settings, cpu)
    result.metrics.update(model_warmup_s=round(warmup[0], 3), model_warmup_settled=warmup[1])
    result.metrics["instances_per_request"] = round(requests.instances_per_request, 3)
    result.metrics["instances_rps"] = round(point.throughput_rps * requests.instances_per_request, 3)
    result.traffic = requests.summary()
    return point


def _cost(point: LevelResult, cpu: CpuPlan, s: MeasureSettings) -> float | None:
    cost = cost_per_1k_requests(point.throughput_rps, cpu.allocated, point.gpu_mem_mb, s.prices)
    return None if cost is None else round_figure(cost)


def _metrics(
    point: LevelResult,
    unloaded: LevelResult | None,
    load_time_s: float | None,
    slo_met: bool,
    s: MeasureSettings,
    cpu: CpuPlan | None,  # None: a server autotune did not start, whose allowance it does not know
) -> dict[str, Any]:
    def r(x: float | None, nd: int = 3) -> float | None:
        return None if x is None else round(x, nd)

    def ci(x: tuple[float, float] | None, nd: int = 3) -> list[float] | None:
        return None if x is None else [round(x[0], nd), round(x[1], nd)]

    server_cores = point.cpu_cores or 0.0
    return {
        "throughput_rps": r(point.throughput_rps),
        "throughput_ci95": ci(point.throughput_ci95),
        "latency_p50_ms": r(point.latency_p50_ms),
        "latency_p90_ms": r(point.latency_p90_ms),
        "latency_p99_ms": r(point.latency_p99_ms),
        "latency_p99_ci95": ci(point.latency_p99_ci95),
        "requests": point.requests,
        "censored": point.censored,
        "windows_used": point.windows_used,
        "unloaded_latency_p50_ms": r(unloaded.latency_p50_ms) if unloaded else None,
        "error_rate": r(point.error_rate, 6),
        "cpu_cores": r(point.cpu_cores),
        "rss_mb": r(point.rss_mb, 1),
        "rss_mean_mb": r(point.rss_mean_mb, 1),
        # What the server was given (what a deployment pays for), and what that costs per 1,000 answers.
        "cpus_allocated": cpu.allocated if cpu else None,
        "cost_per_1k_requests": _cost(point, cpu, s) if cpu else None,
        "throttled_periods": point.throttled_periods,
        "throttled_s": point.throttled_s,
        "gpu_util_pct": r(point.gpu_util_pct, 1),
        "gpu_mem_mb": r(point.gpu_mem_mb, 1),
        "gpu_power_w": r(point.gpu_power_w, 1),
        "load_time_s": r(load_time_s),
        "concurrency": point.concurrency,
        "rate_rps": point.rate,
        # Open loop: what was asked, what was served, and the arrivals never sent (counted as errors).
        "offered_rps": r(point.offered_rps),
        "achieved_rps": r(point.throughput_rps) if point.offered_rps is not None else None,
        "dropped": point.dropped if point.mode == "open" else None,
        "stable": point.stable,
        "remeasured": point.remeasured,
        "client_saturated": point.client_saturated,
        "client_cpu_cores": r(point.client_cpu_cores),
        # The generator's share of the CPU the two used: on shared cores, a large share slows the server.
        "client_cpu_share": r(point.client_cpu_cores / (point.client_cpu_cores + server_cores))
        if point.client_cpu_cores + server_cores > 0
        else None,
        "foreign_cores": r(point.foreign_cores),
        "slo_ms": s.slo_ms,
        "slo_met": slo_met,
        # From the server's own metrics (monitoring on): what it saw at the operating point.
        "server_requests": (point.server or {}).get("requests"),
        "server_latency_mean_ms": (point.server or {}).get("latency_mean_ms"),
        "server_mean_batch_size": (point.server or {}).get("mean_batch_size"),
    }
