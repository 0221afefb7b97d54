"""Measure one serving configuration on a live server: the trial protocol.

write batching file -> start server (own process group) -> wait until AVAILABLE
-> load generator (own process) -> per load level: warm-up, then windows until
the last K agree or the cap is hit -> operating point -> stop everything, on
every exit path.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autotune.errors import TrialError
from autotune.knobs import ServingConfig
from autotune.load.client import LoadGenerator, LoadGeneratorError, LoadSpec
from autotune.load.payload import build_payload
from autotune.load.stats import max_of_present, mean_of_present, percentiles, windows_agree
from autotune.models.resolve import ModelRef
from autotune.monitor import ResourceMonitor
from autotune.protos import monitoring_config_text
from autotune.servers.argv import ServerPaths, write_batching_file
from autotune.servers.backends import Backend
from autotune.servers.docker import container_pid
from autotune.servers.process import ServerProcess, ServerStartError
from autotune.servers.scrape import ServerCounters, scrape

FAILURE_REASONS = (
    "server_start_failed",
    "server_crashed",
    "timeout",
    "errors_over_limit",
    "oom",
    "unstable",
    "interrupted",
    "client_failed",
)
# "failed to map segment" is the dynamic loader's mmap failing: under an address-space limit that is
# the first thing to run out, before any allocation TensorFlow makes itself.
_OOM_MARKERS = (
    "MemoryError",
    "std::bad_alloc",
    "OOM",
    "Out of memory",
    "ResourceExhausted",
    "Cannot allocate memory",
    "failed to map segment",
)


@dataclass(frozen=True)
class MeasureSettings:
    """How to measure: load shape, windows, stability rule, limits."""

    protocol: str = "rest"
    concurrency: int | None = None  # fixed closed-loop load; None ramps 1, 2, 4, ...
    rate: float | None = None  # open loop at this many requests/s
    slo_ms: float | None = None  # p99 bound for the operating point
    window_s: float = 2.0
    warmup_s: float = 1.0
    stable_windows: int = 3
    tolerance: float = 0.10
    max_windows: int = 10
    max_concurrency: int = 64
    min_growth: float = 0.05  # the ramp stops when throughput grows less than this
    max_error_rate: float = 0.01
    ready_timeout_s: float = 300.0
    trial_timeout_s: float = 1800.0
    request_timeout_s: float = 30.0
    client_saturation_cores: float = 0.85
    monitoring: bool = False  # enable TF Serving's Prometheus endpoint on the server
    measure_unloaded: bool = True  # the concurrency-1 level first (off only for grid recording)


@dataclass
class LevelResult:
    """One load level: its windows and their aggregate over the last K windows."""

    mode: str  # closed | open
    concurrency: int | None
    rate: float | None
    stable: bool
    windows: list[dict[str, Any]]
    throughput_rps: float
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    error_rate: float
    cpu_cores: float | None
    rss_mb: float | None
    gpu_util_pct: float | None
    gpu_mem_mb: float | None
    gpu_power_w: float | None
    foreign_cores: float | None
    client_cpu_cores: float
    client_saturated: bool
    server: dict[str, Any] | None = None  # the server's own Prometheus counters over the level


@dataclass
class TrialResult:
    """Everything one trial measured, or why it could not."""

    model: str
    backend: str
    protocol: str
    config: ServingConfig
    argv: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    levels: list[LevelResult] = field(default_factory=list)
    failure_reason: str | None = None
    failure_message: str | None = None
    server_log_tail: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure_reason is None

    def to_json(self, windows: bool = False) -> dict[str, Any]:
        """Metrics under DESIGN's names, plus config and per-level summaries."""
        out: dict[str, Any] = dict(self.metrics)
        out.update(
            model=self.model,
            backend=self.backend,
            protocol=self.protocol,
            config=self.config.to_dict(),
            argv=self.argv,
            levels=[{k: v for k, v in asdict(level).items() if windows or k != "windows"} for level in self.levels],
        )
        if self.failure_reason:
            out["failure_reason"] = self.failure_reason
            out["failure_message"] = self.failure_message
            out["server_log_tail"] = self.server_log_tail
        return out


def free_ports(n: int) -> list[int]:
    """N distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _aggregate(mode: str, value: float, windows: list[dict[str, Any]], stable: bool, s: MeasureSettings) -> LevelResult:
    last = windows[-s.stable_windows :]
    latencies = [lat for w in last for lat in w["latencies_ms"]]
    pct = percentiles(latencies)
    ok = sum(w["ok"] for w in last)
    errors = sum(w["errors"] for w in last)

    def mean(key: str) -> float | None:
        return mean_of_present([w.get(key) for w in last])

    def peak(key: str) -> float | None:
        return max_of_present([w.get(key) for w in last])

    client_cpu = max(w["client_cpu_cores"] for w in last)
    return LevelResult(
        mode=mode,
        concurrency=int(value) if mode == "closed" else None,
        rate=float(value) if mode == "open" else None,
        stable=stable,
        windows=[{k: v for k, v in w.items() if k != "latencies_ms"} for w in windows],
        throughput_rps=sum(w["throughput_rps"] for w in last) / len(last),
        latency_p50_ms=pct["p50"],
        latency_p90_ms=pct["p90"],
        latency_p99_ms=pct["p99"],
        error_rate=errors / (ok + errors) if ok + errors else 1.0,
        cpu_cores=mean("cpu_cores"),
        rss_mb=peak("rss_mb"),
        gpu_util_pct=mean("gpu_util_pct"),
        gpu_mem_mb=peak("gpu_mem_mb"),
        gpu_power_w=mean("gpu_power_w"),
        foreign_cores=mean("foreign_cores"),
        client_cpu_cores=client_cpu,
        client_saturated=client_cpu >= s.client_saturation_cores,
    )


class _Session:
    """The live parts of one trial: server, monitor, load generator."""

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
        self.s, self.deadline, self.progress = settings, deadline, progress
        self.scraper = scraper
        self.level_id = 0

    def _check_server(self) -> None:
        if not self.server.alive():
            message = f"server died during measurement: {self.server.last_error_line()}"
            raise TrialError(_exit_reason(self.server), message)

    def measure(self, mode: str, value: float) -> LevelResult:
        """Drive one load level until its windows agree or hit the cap."""
        self.level_id += 1
        before = self.scraper() if self.scraper else None
        if mode == "closed":
            self.gen.closed_loop(int(value), self.level_id)
        else:
            self.gen.open_loop(float(value), self.level_id)
        label = f"c={int(value)}" if mode == "closed" else f"rate={value:g}/s"
        windows: list[dict[str, Any]] = []
        stable = False
        wait = self.s.window_s + self.s.warmup_s + self.s.request_timeout_s
        # A live server that completes nothing for longer than a request may take is hung (SIGSTOP,
        # deadlock): a timeout, not a measurement of zero throughput.
        last_answer = time.monotonic()
        while True:
            if time.monotonic() > self.deadline:
                raise TrialError("timeout", f"trial exceeded {self.s.trial_timeout_s:.0f}s")
            event = self.gen.next_event(wait)
            self._check_server()
            if event.get("level") != self.level_id:
                continue  # a late window of the previous level
            if event["event"] == "level_done":
                break
            if event["event"] != "window":
                continue
            if event["ok"]:
                last_answer = time.monotonic()
            elif time.monotonic() - last_answer > self.s.request_timeout_s + self.s.window_s:
                raise TrialError(
                    "timeout",
                    f"server stopped answering: no request succeeded for {time.monotonic() - last_answer:.0f}s "
                    f"(request timeout {self.s.request_timeout_s:g}s)",
                )
            res = self.monitor.summary(event["start"], event["end"])
            event.update(
                cpu_cores=res.cpu_cores,
                rss_mb=res.rss_mb,
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
            if windows_agree(
                [w["throughput_rps"] for w in windows],
                [w["latency_ms"]["p99"] for w in windows],
                self.s.stable_windows,
                self.s.tolerance,
            ):
                stable = True
                break
        self.gen.idle()
        if not windows:
            raise TrialError("client_failed", "load generator produced no windows")
        level = _aggregate(mode, value, windows, stable, self.s)
        after = self.scraper() if self.scraper else None
        if before is not None and after is not None:
            # The server's own count over the level (warm-up and drain included) must cover the
            # client's: fewer would mean the generator counted answers the server never gave.
            level.server = after.since(before)
            level.server["client_requests"] = sum(w["ok"] + w["errors"] for w in windows)
        return level


def _exit_reason(server: ServerProcess) -> str:
    # SIGKILL alone is not proof of OOM (a user or the daemon may send it), so look for the words.
    tail = server.log_tail(40)
    return "oom" if any(m in tail for m in _OOM_MARKERS) else "server_crashed"


def _operating_point(levels: list[LevelResult], s: MeasureSettings) -> tuple[LevelResult, bool]:
    """The best-throughput level within the SLO and error limit; (level, slo_met)."""
    good = [
        lv
        for lv in levels
        if lv.error_rate <= s.max_error_rate
        and (s.slo_ms is None or (lv.latency_p99_ms is not None and lv.latency_p99_ms <= s.slo_ms))
    ]
    if good:
        return max(good, key=lambda lv: lv.throughput_rps), True
    return levels[0], False


def _run_levels(session: _Session, s: MeasureSettings) -> tuple[list[LevelResult], list[LevelResult]]:
    """Unloaded level first, then the fixed load or the ramp.

    Returns (every level measured, unloaded first; the levels that may be the operating point).
    Without the unloaded level, levels[0] is the fixed load itself.
    """
    if not s.measure_unloaded and (s.rate is not None or s.concurrency is not None):
        level = session.measure("open", s.rate) if s.rate is not None else session.measure("closed", s.concurrency or 1)
        return [level], [level]
    unloaded = session.measure("closed", 1)
    levels = [unloaded]
    if s.rate is not None:
        levels.append(session.measure("open", s.rate))
        return levels, levels[1:]
    if s.concurrency is not None:
        if s.concurrency != 1:
            levels.append(session.measure("closed", s.concurrency))
        return levels, levels[-1:]
    best = unloaded
    concurrency = 1
    while concurrency * 2 <= s.max_concurrency:
        if s.slo_ms is not None and levels[-1].latency_p99_ms is not None and levels[-1].latency_p99_ms > s.slo_ms:
            break  # the SLO broke: more load only makes it worse
        concurrency *= 2
        level = session.measure("closed", concurrency)
        levels.append(level)
        if level.throughput_rps < best.throughput_rps * (1 + s.min_growth):
            break  # saturated: throughput stopped growing
        best = max(best, level, key=lambda lv: lv.throughput_rps)
    return levels, levels


def run_trial(
    model: ModelRef,
    config: ServingConfig,
    settings: MeasureSettings,
    backend: Backend,
    progress: Callable[[str], None] | None = None,
    on_server_start: Callable[[int], None] | None = None,
) -> TrialResult:
    """Measure CONFIG for MODEL; never raises for server or load failures (see failure_reason)."""
    say = progress or (lambda _msg: None)
    started = time.monotonic()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="autotune-trial-")))
        grpc_port, rest_port = free_ports(2)
        monitoring_file = None
        if settings.monitoring:
            monitoring_file = workdir / "monitoring.config"
            monitoring_file.write_text(monitoring_config_text())
        paths = ServerPaths(
            model.name,
            model.base_path,
            grpc_port,
            rest_port,
            write_batching_file(config, workdir / "batching_parameters.txt"),
            monitoring_file,
        )
        launch = backend.launch(config, paths, workdir)
        argv = launch.argv
        result = TrialResult(model.name, backend.name, settings.protocol, config, argv)
        server: ServerProcess | None = None
        monitor: ResourceMonitor | None = None
        gen: LoadGenerator | None = None
        measure_started: float | None = None
        stopping = time.monotonic()
        try:
            say("starting server")
            server = ServerProcess(argv, workdir / "server.log", cleanup=launch.cleanup)
            if on_server_start:
                on_server_start(server.pid)
            spec = LoadSpec(
                protocol=settings.protocol,
                rest_port=rest_port,
                grpc_port=grpc_port,
                model_name=model.name,
                window_s=settings.window_s,
                warmup_s=settings.warmup_s,
                max_windows=settings.max_windows,
                timeout_s=settings.request_timeout_s,
                max_lifetime_s=settings.trial_timeout_s + 60,
                grpc_target=launch.grpc_target,
            )
            # The generator starts while the model loads (it sends nothing until told): its start-up
            # is hidden behind the server's instead of added to every trial.
            gen = LoadGenerator(spec, build_payload(model.name, model.signature), workdir)
            ready = server.wait_ready(rest_port, model.name, settings.ready_timeout_s)
            say(f"model AVAILABLE after {ready.load_time_s:.1f}s")
            # A container's processes are not children of `docker run`: sample the container's own tree.
            sampled = (container_pid(launch.container) if launch.container else None) or server.pid
            monitor = ResourceMonitor(sampled).start()
            monitor.add_own_pid(gen.pid)
            gen.wait_ready()
            measure_started = time.monotonic()
            deadline = started + settings.trial_timeout_s
            scraper = (lambda: scrape(rest_port, model.name)) if settings.monitoring else None
            session = _Session(server, monitor, gen, settings, deadline, say, scraper)
            result.levels, candidates = _run_levels(session, settings)
            point, slo_met = _operating_point(candidates, settings)
            unloaded = result.levels[0] if settings.measure_unloaded else None
            result.metrics = _metrics(point, unloaded, ready.load_time_s, slo_met, settings)
            if point.error_rate > settings.max_error_rate:
                raise TrialError(
                    "errors_over_limit",
                    f"error rate {point.error_rate:.1%} over the limit {settings.max_error_rate:.1%} "
                    f"({_error_kinds(point)})",
                )
        except ServerStartError as exc:
            result.failure_reason, result.failure_message = exc.reason, str(exc)
            if server is not None and not server.alive() and _exit_reason(server) == "oom":
                result.failure_reason = "oom"
        except TrialError as exc:
            result.failure_reason, result.failure_message = exc.reason, str(exc)
        except LoadGeneratorError as exc:
            if server is not None and not server.alive():
                result.failure_reason = _exit_reason(server)
                result.failure_message = f"server died during measurement: {server.last_error_line()}"
            else:
                result.failure_reason, result.failure_message = "client_failed", str(exc)
        except KeyboardInterrupt:
            result.failure_reason, result.failure_message = "interrupted", "interrupted by the user"
        finally:
            # Load first, then sampling, then the server; the log tail is read before workdir goes.
            if gen is not None:
                gen.stop()
            if monitor is not None:
                monitor.stop()
            stopping = time.monotonic()
            if server is not None:
                server.stop()
                result.server_log_tail = server.log_tail(30)
        # Where the trial's time went (benchmarks/trial_overhead.py): start-up and teardown are overhead.
        result.metrics["trial_wall_s"] = round(time.monotonic() - started, 3)
        if measure_started is not None:
            result.metrics["setup_s"] = round(measure_started - started, 3)
            result.metrics["measure_s"] = round(stopping - measure_started, 3)
            result.metrics["teardown_s"] = round(time.monotonic() - stopping, 3)
    return result


def _error_kinds(level: LevelResult) -> str:
    kinds: dict[str, int] = {}
    for w in level.windows:
        for k, n in w.get("error_kinds", {}).items():
            kinds[k] = kinds.get(k, 0) + n
    return ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())) or "none"


def _metrics(
    point: LevelResult, unloaded: LevelResult | None, load_time_s: float, slo_met: bool, s: MeasureSettings
) -> dict[str, Any]:
    def r(x: float | None, nd: int = 3) -> float | None:
        return None if x is None else round(x, nd)

    return {
        "throughput_rps": r(point.throughput_rps),
        "latency_p50_ms": r(point.latency_p50_ms),
        "latency_p90_ms": r(point.latency_p90_ms),
        "latency_p99_ms": r(point.latency_p99_ms),
        "unloaded_latency_p50_ms": r(unloaded.latency_p50_ms) if unloaded else None,
        "error_rate": r(point.error_rate, 6),
        "cpu_cores": r(point.cpu_cores),
        "rss_mb": r(point.rss_mb, 1),
        "gpu_util_pct": r(point.gpu_util_pct, 1),
        "gpu_mem_mb": r(point.gpu_mem_mb, 1),
        "gpu_power_w": r(point.gpu_power_w, 1),
        "load_time_s": r(load_time_s),
        "concurrency": point.concurrency,
        "rate_rps": point.rate,
        "stable": point.stable,
        "client_saturated": point.client_saturated,
        "client_cpu_cores": r(point.client_cpu_cores),
        "foreign_cores": r(point.foreign_cores),
        "slo_ms": s.slo_ms,
        "slo_met": slo_met,
        # From the server's own metrics (monitoring on): what it saw at the operating point.
        "server_requests": (point.server or {}).get("requests"),
        "server_latency_mean_ms": (point.server or {}).get("latency_mean_ms"),
        "server_mean_batch_size": (point.server or {}).get("mean_batch_size"),
    }
