"""What a trial measured: each load level's figures and the trial's whole result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from autotune.knobs import ServingConfig


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
