"""Measure one serving configuration on a live server: the trial protocol.

prepare (batching file, ports, argv) -> start server (own process group) -> wait
until AVAILABLE -> load generator (own process) -> warm the model up until its
unloaded latency settles -> per load level: warm-up, then windows (requests
belong to the window they were sent in) until the last K agree and hold enough
requests, or the cap is hit (then once more) -> operating point -> stop
everything, on every exit path.
"""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from autotune.cores import schedulable_cores
from autotune.cost import PRICE_DEFAULTS, Prices, cost_per_1k_requests
from autotune.cpulimit import CpuPlan, plan_cpus
from autotune.errors import AutotuneError, TrialError
from autotune.knobs import MIXED_PRECISION, SAVEDMODEL, ServingConfig
from autotune.leftovers import claim
from autotune.load.client import LoadGenerator, LoadGeneratorError, LoadSpec
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
from autotune.models.accuracy import DEFAULT_MIN_TOP1_AGREEMENT
from autotune.models.resolve import ModelRef, resolve_model, served_name
from autotune.models.signature import Signature
from autotune.monitor import ResourceMonitor
from autotune.multimodel import mixed_payloads, models_config_text
from autotune.protos import monitoring_config_text
from autotune.servers.argv import WARMUP_FILE, ServerPaths, write_batching_file
from autotune.servers.backends import Backend, Launch
from autotune.servers.process import ServerProcess, ServerStartError
from autotune.servers.scrape import ServerCounters, scrape
from autotune.servers.target import RunningServer, Target, listening_pid
from autotune.states import FailureReason
from autotune.traffic.payload import Payload
from autotune.traffic.requests import RequestSet, load_requests
from autotune.warmup import has_own_warmup, warmed_model_base
from autotune.windows import WINDOW_DEFAULTS

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
    window_s: float = WINDOW_DEFAULTS.window_s
    warmup_s: float = WINDOW_DEFAULTS.warmup_s
    stable_windows: int = 3
    tolerance: float = 0.10  # throughput: the stable span's chunks agree within this
    # p99 of a chunk of ~70 requests is nearly its maximum: its sampling spread is a few times the
    # throughput's, so the same 10% would call a steady server unstable.
    p99_tolerance: float = 0.20
    max_windows: int = WINDOW_DEFAULTS.max_windows
    max_concurrency: int = 64
    min_growth: float = 0.05  # the ramp stops when throughput grows less than this
    # A load sweep goes on past saturation (only queueing grows) until the SLO breaks: where is what it reports.
    ramp_to_slo: bool = False
    max_error_rate: float = 0.01
    ready_timeout_s: float = 300.0
    trial_timeout_s: float = 1800.0
    request_timeout_s: float = 30.0
    client_saturation_cores: float = 0.85
    monitoring: bool = False  # enable TF Serving's Prometheus endpoint on the server
    measure_unloaded: bool = True  # the concurrency-1 level first (off only for grid recording)
    # A p99 needs requests behind it: windows extend until the aggregate holds this many.
    min_requests: int = 200
    # The unloaded level only reports its p50, which needs far fewer.
    min_requests_unloaded: int = 30
    remeasure_unstable: bool = True  # an unstable level is measured once more on the same server
    # Model warm-up before the first level: short c=1 windows until two in a row agree on p50.
    model_warmup_window_s: float = 0.5
    model_warmup_max_s: float = 30.0
    min_achieved_fraction: float = 0.95  # open loop: a level achieving less than this of its offer is infeasible
    # What the allocated resources cost per hour (the study's [cost]); flat so stored settings stay plain JSON.
    core_hour_price: float = PRICE_DEFAULTS.core_hour
    gpu_gib_hour_price: float = PRICE_DEFAULTS.gpu_gib_hour
    requests_file: str | None = None  # the user's traffic (traffic/requests.py); None: synthetic requests
    batch: int | None = None  # instances per request (client-side batching); None: as the file has them, else 1
    # Several models on one server: model (built-in name or path) -> its share of the requests; None: one model.
    mix: dict[str, float] | None = None
    # The accuracy guard a model variant must pass ([slo] min_top1_agreement, max_abs_error).
    min_top1_agreement: float | None = DEFAULT_MIN_TOP1_AGREEMENT
    max_abs_error: float | None = None

    @property
    def prices(self) -> Prices:
        return Prices(self.core_hour_price, self.gpu_gib_hour_price)

    @property
    def shares(self) -> dict[str, float]:
        """The mix by served model name (empty: one model)."""
        return {served_name(spec): share for spec, share in (self.mix or {}).items()}

    def load_spec(self, model_name: str, rest_port: int, grpc_target: str | None, **where: Any) -> LoadSpec:
        """What the load generator is told: these windows and limits, sent to MODEL_NAME at REST_PORT
        (and GRPC_TARGET); WHERE gives a host and the hosts allowed besides loopback."""
        return LoadSpec(
            protocol=self.protocol,
            rest_port=rest_port,
            grpc_port=0,
            model_name=model_name,
            window_s=self.window_s,
            warmup_s=self.warmup_s,
            max_windows=self.max_windows,
            timeout_s=self.request_timeout_s,
            max_lifetime_s=self.trial_timeout_s + 60,
            grpc_target=grpc_target,
            **where,
        )


@dataclass
class LevelResult:
    """One load level: its windows and their aggregate over the stable span (the last K or more windows)."""

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
    rss_mb: float | None  # peak over the stable span
    gpu_util_pct: float | None
    gpu_mem_mb: float | None
    gpu_power_w: float | None
    foreign_cores: float | None
    client_cpu_cores: float
    client_saturated: bool
    server: dict[str, Any] | None = None  # the server's own Prometheus counters over the level
    requests: int = 0  # answered requests behind the aggregate
    censored: int = 0  # requests still in flight at their window's close, counted with their elapsed time
    dropped: int = 0  # open loop: arrivals never sent
    windows_used: int = 0
    throughput_ci95: tuple[float, float] | None = None  # Student-t over the windows used (batch means)
    latency_p99_ci95: tuple[float, float] | None = None  # order statistics at binomial ranks
    offered_rps: float | None = None  # open loop
    remeasured: bool = False  # the first attempt did not stabilise; this is the second
    rss_mean_mb: float | None = None
    # Under a CFS quota: periods in which the server was throttled over the level, and the time lost.
    throttled_periods: int | None = None
    throttled_s: float | None = None

    def delivered(self, fraction: float) -> bool:
        """Open loop: whether the server achieved FRACTION of the offered rate (closed loop: always)."""
        return self.offered_rps is None or self.throughput_rps >= fraction * self.offered_rps


@dataclass
class TrialResult:
    """Everything one trial measured, or why it could not."""

    model: str
    backend: str
    protocol: str
    config: ServingConfig | None  # None: a --target whose configuration the user did not give
    argv: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    levels: list[LevelResult] = field(default_factory=list)
    failure_reason: str | None = None
    failure_message: str | None = None
    server_log_tail: str | None = None
    traffic: dict[str, Any] | None = None  # what was sent: RequestSet.summary()
    target: str | None = None  # a server autotune did not start: its URL

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
            config=self.config.to_dict() if self.config else None,
            argv=self.argv,
            levels=[{k: v for k, v in asdict(level).items() if windows or k != "windows"} for level in self.levels],
        )
        if self.traffic:
            out["traffic"] = self.traffic
        if self.target:
            out["target"] = self.target
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


@dataclass(frozen=True)
class PreparedLaunch:
    """A trial's server, ready to start: its files written, its ports chosen, its argv built."""

    paths: ServerPaths
    launch: Launch
    workdir: Path
    cpu: CpuPlan
    backend: Backend

    @property
    def files(self) -> dict[str, str]:
        """The config files the server reads, by name."""
        found = (self.paths.batching_file, self.paths.monitoring_file)
        files = {p.name: str(p) for p in found if p is not None}
        if self.paths.overlay_version is not None:  # the warm-up file autotune placed beside the model
            warmup = self.paths.model_base_path / str(self.paths.overlay_version) / WARMUP_FILE
            files[WARMUP_FILE.name] = str(warmup)
        return files


@dataclass(frozen=True)
class Served:
    """A model a trial's server serves, the requests it gets, and its share of them (several models)."""

    model: ModelRef
    payloads: list[Payload]
    weight: float = 1.0


def mix_others(model: ModelRef, settings: MeasureSettings) -> tuple[Served, ...]:
    """The models served beside MODEL in a multi-model study (synthetic requests, the study's batch)."""
    others = []
    for spec, weight in (settings.mix or {}).items():
        if served_name(spec) == model.name:
            continue
        other = resolve_model(spec)
        payloads = load_requests(None, other.signature, settings.batch).payloads(other.name, other.signature.name)
        others.append(Served(other, payloads, weight))
    return tuple(others)


def prepare_launch(
    model: ModelRef,
    config: ServingConfig,
    backend: Backend,
    workdir: Path,
    monitoring: bool,
    warmup: list[Payload] | None = None,
    others: tuple[Served, ...] = (),
) -> PreparedLaunch:
    """Write the batching (and monitoring) file into WORKDIR, pick ports, build the argv; start nothing.

    With WARMUP, the server loads the model with those requests as its warm-up file (unless the model
    ships its own), as a deployment of the export does. With OTHERS, it serves them too, from a models
    config, each model batching by its own copy of CONFIG's batching file. Raises AutotuneError when this
    host cannot give the config's CPU allowance."""
    cpu = plan_cpus(config.cpus, schedulable_cores())
    monitoring_file = None
    if monitoring:
        monitoring_file = workdir / "monitoring.config"
        monitoring_file.write_text(monitoring_config_text())
    grpc_port, rest_port = free_ports(2)
    batching = write_batching_file(config, workdir / "batching_parameters.txt")
    if others:
        paths = _several_models(Served(model, warmup or []), others, batching, workdir, grpc_port, rest_port)
        paths = replace(paths, monitoring_file=monitoring_file)
        return PreparedLaunch(paths, backend.launch(config, paths, workdir, cpu), workdir, cpu, backend)
    base, overlay = model.base_path, None
    if warmup and not has_own_warmup(model):
        base, overlay = warmed_model_base(model, warmup, workdir / "model"), model.version
    paths = ServerPaths(
        model.name,
        base,
        grpc_port,
        rest_port,
        batching,
        monitoring_file,
        warmup=bool(warmup) or has_own_warmup(model),
        overlay_version=overlay,
    )
    return PreparedLaunch(paths, backend.launch(config, paths, workdir, cpu), workdir, cpu, backend)


def _several_models(
    first: Served, others: tuple[Served, ...], batching: Path | None, workdir: Path, grpc_port: int, rest_port: int
) -> ServerPaths:
    """Every model rebuilt under WORKDIR/models with its warm-up file and (batching on) its batching_params.pbtxt,
    and the models config listing them."""
    text = batching.read_text() if batching is not None else None
    bases = {
        s.model.name: str(warmed_model_base(s.model, s.payloads, workdir / "models" / s.model.name, text))
        for s in (first, *others)
    }
    config_file = workdir / "models.config"
    config_file.write_text(models_config_text(bases))
    base = Path(bases[first.model.name])
    return ServerPaths(
        first.model.name, base, grpc_port, rest_port, batching, None, warmup=True, model_config_file=config_file
    )


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


class _LevelRunner:
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
            raise TrialError(_exit_reason(self.server), message)

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
        w = self.settings.model_warmup_window_s
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


def _exit_reason(server: ServerProcess) -> FailureReason:
    # SIGKILL alone is not proof of OOM (a user or the daemon may send it), so look for the words.
    tail = server.log_tail(40)
    return FailureReason.oom if any(m in tail for m in _OOM_MARKERS) else FailureReason.server_crashed


def classify_failure(exc: BaseException, server: ServerProcess | None) -> tuple[str, str]:
    """(failure_reason, message) for anything that ended a trial early; a dead server explains most."""
    dead = server is not None and not server.alive()
    if isinstance(exc, KeyboardInterrupt):
        return FailureReason.interrupted, "interrupted by the user"
    if isinstance(exc, ServerStartError):
        return (FailureReason.oom if dead and _exit_reason(server) is FailureReason.oom else exc.reason), str(exc)  # type: ignore[arg-type]
    if isinstance(exc, TrialError):
        return exc.reason, str(exc)
    if dead:  # the generator lost its server: the server's death is the cause
        return _exit_reason(server), f"server died during measurement: {server.last_error_line()}"  # type: ignore[union-attr]
    return FailureReason.client_failed, str(exc)


class LiveTrial:
    """Owns a trial's server, resource monitor and load generator; stops all three on every exit path."""

    def __init__(
        self, model: ModelRef, prepared: PreparedLaunch, settings: MeasureSettings, payloads: list[Payload]
    ) -> None:
        self.model, self.prepared, self.settings, self.payloads = model, prepared, settings, payloads
        self.server: ServerProcess | None = None
        self.monitor: ResourceMonitor | None = None
        self.gen: LoadGenerator | None = None
        self.log_tail: str | None = None
        self.stopping_at: float | None = None
        # Disjoint cores for server and generator where the host has enough (prepared.cpu); else they share.
        self.client_cores = prepared.cpu.client_cores or None

    def __enter__(self) -> LiveTrial:
        return self

    def start(self, on_server_start: Callable[[int], None] | None) -> float:
        """Start the server and the generator; return the model's load time once it is AVAILABLE."""
        launch, paths, s = self.prepared.launch, self.prepared.paths, self.settings
        self.server = ServerProcess(
            launch.argv, self.prepared.workdir / "server.log", cleanup=launch.cleanup, cpu=launch.cpu
        )
        if on_server_start:
            on_server_start(self.server.pid)
        spec = s.load_spec(self.model.name, paths.rest_port, launch.grpc_target)
        # The generator starts while the model loads (it sends nothing until told): its start-up
        # is hidden behind the server's instead of added to every trial.
        self.gen = LoadGenerator(spec, self.payloads, self.prepared.workdir, cores=self.client_cores)
        ready = self.server.wait_ready(paths.rest_port, self.model.name, s.ready_timeout_s)
        sampled = self.prepared.backend.monitor_pid(launch, self.server.pid)
        self.monitor = ResourceMonitor(sampled).start()
        self.monitor.add_own_pid(self.gen.pid)
        self.gen.wait_ready()
        return ready.load_time_s

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Load first, then sampling, then the server; the log tail is read before the workdir goes.
        if self.gen is not None:
            self.gen.stop()
        if self.monitor is not None:
            self.monitor.stop()
        self.stopping_at = time.monotonic()
        if self.server is not None:
            self.server.stop()
            self.log_tail = self.server.log_tail(30)


def _operating_point(levels: list[LevelResult], s: MeasureSettings) -> tuple[LevelResult, bool]:
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


def _run_levels(runner: _LevelRunner, s: MeasureSettings) -> tuple[list[LevelResult], list[LevelResult]]:
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
    with tempfile.TemporaryDirectory(prefix="autotune-trial-") as tmp:
        claim(Path(tmp))  # so that a sweep after a kill -9 knows whose it was
        try:
            served, accuracy = model_variant(model, config, settings, say)
        except AutotuneError as exc:  # the model cannot become the variant (an op TFLite or XLA lacks)
            failed = TrialResult(model.name, backend.name, settings.protocol, config, [])
            failed.failure_reason, failed.failure_message = FailureReason.variant_failed, str(exc)
            return failed
        try:
            # Read and checked before the server starts: a request file gone bad since the job began fails here.
            requests = load_requests(settings.requests_file, model.signature, settings.batch)
            payloads = requests.payloads(model.name, model.signature.name)
            others = mix_others(model, settings)
            prepared = prepare_launch(served, config, backend, Path(tmp), settings.monitoring, payloads, others)
            if others:  # the generator sends every model's requests, in the mix's proportion
                by_model = {model.name: payloads, **{o.model.name: o.payloads for o in others}}
                payloads = mixed_payloads(by_model, settings.shares)
        except AutotuneError as exc:  # an allowance this host cannot give (a config stored on another host)
            failed = TrialResult(model.name, backend.name, settings.protocol, config, [])
            failed.failure_reason, failed.failure_message = FailureReason.server_start_failed, str(exc)
            return failed
        result = TrialResult(model.name, backend.name, settings.protocol, config, prepared.launch.argv)
        live = LiveTrial(model, prepared, settings, payloads)
        measure_started: float | None = None
        with live:
            try:
                say("starting server")
                load_time_s = live.start(on_server_start)
                say(f"model AVAILABLE after {load_time_s:.1f}s")
                accuracy = accuracy or served_accuracy(model, config, settings, backend.name, prepared.launch, say)
                measure_started = time.monotonic()
                base_url = f"http://127.0.0.1:{prepared.paths.rest_port}"
                scraper = (lambda: scrape(base_url, model.name)) if settings.monitoring else None
                assert live.server and live.monitor and live.gen
                runner = _LevelRunner(
                    live.server, live.monitor, live.gen, settings, started + settings.trial_timeout_s, say, scraper
                )
                point = _measure(result, runner, requests, load_time_s, prepared.cpu)
                if settings.mix:
                    assert result.traffic is not None
                    result.traffic["mix"] = settings.shares
                # Sharing cores with the server, a generator using a quarter of their CPU can slow it.
                share = result.metrics.get("client_cpu_share") or 0.0
                result.metrics["cores_shared"] = live.client_cores is None
                result.metrics["client_interference"] = live.client_cores is None and share > 0.25
                _check_errors(point, settings)
            except (ServerStartError, TrialError, LoadGeneratorError, KeyboardInterrupt) as exc:
                result.failure_reason, result.failure_message = classify_failure(exc, live.server)
        result.server_log_tail = live.log_tail
        if accuracy is not None:
            result.metrics["accuracy"] = accuracy
        # Where the trial's time went (benchmarks/trial_overhead.py): start-up and teardown are overhead.
        stopping = live.stopping_at or time.monotonic()
        result.metrics["trial_wall_s"] = round(time.monotonic() - started, 3)
        if measure_started is not None:
            result.metrics["setup_s"] = round(measure_started - started, 3)
            result.metrics["measure_s"] = round(stopping - measure_started, 3)
            result.metrics["teardown_s"] = round(time.monotonic() - stopping, 3)
    return result


def model_variant(
    model: ModelRef, config: ServingConfig, settings: MeasureSettings, say: Callable[[str], None]
) -> tuple[ModelRef, dict[str, Any] | None]:
    """The model as CONFIG serves it: MODEL itself, or its variant (built and checked once, then cached) with
    the variant's accuracy against MODEL and why it fails the guard. Raises AutotuneError when MODEL cannot
    become the variant."""
    if config.model_variant == SAVEDMODEL:
        return model, None
    from autotune.models.optimize import checked_variant

    say(f"preparing {config.model_variant}")
    checked = checked_variant(
        model, config.model_variant, settings.requests_file, settings.min_top1_agreement, settings.max_abs_error
    )
    figures = {"variant": config.model_variant, **checked.accuracy.to_json(), "problem": checked.problem}
    figures["model_bytes"] = checked.variant.size_bytes
    return replace(model, base_path=checked.variant.base), figures


def served_accuracy(
    model: ModelRef,
    config: ServingConfig,
    settings: MeasureSettings,
    backend: str,
    launch: Launch,
    say: Callable[[str], None],
) -> dict[str, Any] | None:
    """For CONFIG's mixed precision, the running server's answers against MODEL's own (asked once per model, input
    set and BACKEND: TF Serving's kernels are not the stand-in's), and why they fail the guard; None when CONFIG
    changes no numerics in the server, or a variant's own check already stands."""
    if config.mixed_precision == MIXED_PRECISION[0] or config.model_variant != SAVEDMODEL:
        return None
    from autotune.models.accuracy import served_outputs
    from autotune.models.optimize import checked_served

    say(f"checking the answers under {config.mixed_precision} mixed precision")
    name = f"mixed_precision_{config.mixed_precision}-{backend}"

    def ask(inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return served_outputs(launch.grpc_target, model.name, model.signature.name, inputs)

    try:
        accuracy, problem = checked_served(
            model, name, ask, settings.requests_file, settings.min_top1_agreement, settings.max_abs_error
        )
    except AutotuneError as exc:
        raise TrialError(FailureReason.variant_failed, str(exc)) from None
    return {"variant": f"mixed_precision={config.mixed_precision}", **accuracy.to_json(), "problem": problem}


def _measure(
    result: TrialResult, runner: _LevelRunner, requests: RequestSet, load_time_s: float | None, cpu: CpuPlan | None
) -> LevelResult:
    """Warm the model up, run the levels, fill RESULT's levels, metrics and traffic; return the operating point."""
    settings = runner.settings
    warmup = runner.warm_up()
    result.levels, candidates = _run_levels(runner, settings)
    point, slo_met = _operating_point(candidates, settings)
    unloaded = result.levels[0] if settings.measure_unloaded else None
    result.metrics = _metrics(point, unloaded, load_time_s, slo_met, settings, cpu)
    result.metrics.update(model_warmup_s=round(warmup[0], 3), model_warmup_settled=warmup[1])
    result.metrics["instances_per_request"] = round(requests.instances_per_request, 3)
    result.metrics["instances_rps"] = round(point.throughput_rps * requests.instances_per_request, 3)
    result.traffic = requests.summary()
    return point


def _check_errors(point: LevelResult, settings: MeasureSettings) -> None:
    """Fail a trial whose operating point errs more than the limit allows."""
    if point.error_rate > settings.max_error_rate:
        raise TrialError(
            FailureReason.errors_over_limit,
            f"error rate {point.error_rate:.1%} over the limit {settings.max_error_rate:.1%} ({_error_kinds(point)})",
        )


def run_target(
    target: Target,
    model_name: str,
    signature: Signature,
    settings: MeasureSettings,
    config: ServingConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrialResult:
    """Measure the server already running at TARGET, as it is (CONFIG: what the user says it runs, if known).

    Nothing is started, stopped or changed there; its process is sampled when it is visible on this host."""
    say = progress or (lambda _msg: None)
    started = time.monotonic()
    requests = load_requests(settings.requests_file, signature, settings.batch)
    server = RunningServer(target, listening_pid(target.rest_port) if target.loopback else None)
    result = TrialResult(model_name, "target", settings.protocol, config, [], target=target.url)
    if settings.protocol == "grpc" and target.grpc_target is None:
        raise AutotuneError("--protocol grpc with --target needs --target-grpc HOST:PORT (TF Serving's --port)")
    spec = settings.load_spec(
        model_name, target.rest_port, target.grpc_target, host=target.host, allow_hosts=target.remote_hosts
    )
    with tempfile.TemporaryDirectory(prefix="autotune-target-") as tmp:
        claim(Path(tmp))
        gen = LoadGenerator(spec, requests.payloads(model_name, signature.name), Path(tmp))
        monitor = ResourceMonitor(server.pid).start()
        monitor.add_own_pid(gen.pid)
        try:
            gen.wait_ready()
            # Its own counters, when it exposes them: they show traffic from others during the measurement.
            scraper = (lambda: scrape(target.url, model_name)) if scrape(target.url, model_name) else None
            runner = _LevelRunner(server, monitor, gen, settings, started + settings.trial_timeout_s, say, scraper)  # type: ignore[arg-type]
            point = _measure(result, runner, requests, None, None)
            result.metrics["server_pid"] = server.pid
            result.metrics["client_answered"] = (point.server or {}).get("client_answered")
            _check_errors(point, settings)
        except (TrialError, LoadGeneratorError, KeyboardInterrupt) as exc:
            result.failure_reason, result.failure_message = classify_failure(exc, server)  # type: ignore[arg-type]
        finally:
            gen.stop()
            monitor.stop()
    result.metrics["trial_wall_s"] = round(time.monotonic() - started, 3)
    return result


def _error_kinds(level: LevelResult) -> str:
    kinds: dict[str, int] = {}
    for w in level.windows:
        for k, n in w.get("error_kinds", {}).items():
            kinds[k] = kinds.get(k, 0) + n
    return ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())) or "none"


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
