"""How a trial measures: every setting of the protocol, from the study or the command line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autotune.cost import PRICE_DEFAULTS, Prices
from autotune.load.client import LoadSpec
from autotune.models.accuracy import DEFAULT_MIN_TOP1_AGREEMENT
from autotune.models.resolve import served_name
from autotune.options import CONCURRENCY, MAX_CONCURRENCY, RATE, REQUEST_TIMEOUT_S, field_of, stored_fields
from autotune.windows import WINDOW_DEFAULTS


@dataclass(frozen=True)
class MeasureSettings:
    """How to measure: load shape, windows, stability rule, limits."""

    protocol: str = "rest"
    concurrency: int | None = field_of(CONCURRENCY)  # None ramps 1, 2, 4, ...
    rate: float | None = field_of(RATE)
    slo_ms: float | None = None  # p99 bound for the operating point
    window_s: float = WINDOW_DEFAULTS.window_s
    warmup_s: float = WINDOW_DEFAULTS.warmup_s
    stable_windows: int = 3
    tolerance: float = WINDOW_DEFAULTS.tolerance  # throughput: the stable span's chunks agree within this
    p99_tolerance: float = WINDOW_DEFAULTS.p99_tolerance
    max_windows: int = WINDOW_DEFAULTS.max_windows
    max_concurrency: int = field_of(MAX_CONCURRENCY)
    min_growth: float = 0.05  # the ramp stops when throughput grows less than this
    # A load sweep goes on past saturation (only queueing grows) until the SLO breaks: where is what it reports.
    ramp_to_slo: bool = False
    max_error_rate: float = 0.01
    ready_timeout_s: float = 300.0
    trial_timeout_s: float = 1800.0
    request_timeout_s: float = field_of(REQUEST_TIMEOUT_S)
    client_saturation_cores: float = 0.85
    monitoring: bool = False  # enable TF Serving's Prometheus endpoint on the server
    measure_unloaded: bool = True  # the concurrency-1 level first (off only for grid recording)
    # A p99 needs requests behind it: windows extend until the aggregate holds this many.
    min_requests: int = 200
    # The unloaded level only reports its p50, which needs far fewer.
    min_requests_unloaded: int = 30
    remeasure_unstable: bool = True  # an unstable level is measured once more on the same server
    # Model warm-up before the first level: short c=1 windows until two in a row agree on p50 (never longer than
    # a measurement window: who asks for short windows asks for a short trial).
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

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> MeasureSettings:
        """The settings a job stored (as JSON): a field renamed or removed since then takes its default, rather
        than making every stored job unreadable."""
        return cls(**stored_fields(cls, stored))

    @property
    def model_warmup_windows_s(self) -> float:
        """How long each of the model warm-up's windows is: its own length, or a shorter measurement window's."""
        return min(self.model_warmup_window_s, self.window_s)

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
