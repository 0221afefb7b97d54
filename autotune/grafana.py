"""A Grafana dashboard for an exported config: TF Serving's own metrics and the container's, with the tuned envelope.

The queries use the metric names TF Serving's Prometheus endpoint exports (the
local stand-in exports the same), the container metrics the kubelet's cAdvisor
exports in Kubernetes, and the autotune daemon's own (its retunes, next to the
server they tune). The figures the tuning confirmed (throughput,
p99, CPU, memory) and the study's SLO are drawn as thresholds, so an operator sees
at a glance when production leaves the envelope it was tuned for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autotune.servers.scrape import BATCH_METRIC, LATENCY_METRIC, REQUESTS_METRIC

if TYPE_CHECKING:
    from autotune.spec import Study

# What the kubelet's cAdvisor exports for every container (the k8s export names the container this).
CONTAINER = "tfserving"
CONTAINER_METRICS = (
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_cpu_cfs_throttled_periods_total",
)
# The daemon's series (daemon._Metrics), as its /metrics page writes them.
DAEMON_GOODPUT = "autotune_last_goodput_rps"
DAEMON_TRIALS = "autotune_trials_total"
DAEMON_GATE = "autotune_gate_open"


@dataclass(frozen=True)
class Envelope:
    """The operating point the tuning confirmed, and the study's limits (None where unknown)."""

    throughput_rps: float | None
    latency_p99_ms: float | None
    slo_p99_ms: float | None
    max_error_rate: float | None
    cpu_cores: float | None
    cpus_allocated: float | None
    rss_mb: float | None


def _thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    points = [{"color": "green", "value": None}]
    points += [{"color": color, "value": value} for value, color in sorted(s for s in steps if s[0] is not None)]
    return {"mode": "absolute", "steps": points}


def _panel(
    pid: int, title: str, exprs: list[tuple[str, str]], unit: str, thresholds: dict[str, Any], description: str
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * ((pid - 1) % 2), "y": 8 * ((pid - 1) // 2)},
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": thresholds,
                # Thresholds drawn as dashed lines: the tuned envelope over the live series.
                "custom": {"thresholdsStyle": {"mode": "dashed"}},
            },
            "overrides": [],
        },
        "targets": [
            {"refId": chr(65 + i), "expr": expr, "legendFormat": legend} for i, (expr, legend) in enumerate(exprs)
        ],
    }


WINDOW = "$__rate_interval"


def _server_panels(model_name: str, e: Envelope) -> list[dict[str, Any]]:
    """What TF Serving itself exports (--monitoring_config_file): requests, latency, batches, errors."""
    m = f'model_name="{model_name}"'
    window = WINDOW

    def latency_ms(q: float) -> str:  # TF Serving's latency histogram is in microseconds
        return f"histogram_quantile({q}, sum by (le) (rate({LATENCY_METRIC}_bucket{{{m}}}[{window}]))) / 1000"

    return [
        _panel(
            1,
            "Request rate",
            [(f"sum by (status) (rate({REQUESTS_METRIC}{{{m}}}[{window}]))", "{{status}}")],
            "reqps",
            _thresholds((e.throughput_rps, "orange")),
            "Requests per second by status; the line is the throughput the tuning confirmed at its operating point.",
        ),
        _panel(
            2,
            "Latency (server side)",
            [(latency_ms(0.5), "p50"), (latency_ms(0.99), "p99")],
            "ms",
            _thresholds((e.latency_p99_ms, "orange"), (e.slo_p99_ms, "red")),
            "Quantiles of TF Serving's request latency histogram (microseconds, shown in ms); "
            "orange: the tuned p99, red: the SLO.",
        ),
        _panel(
            3,
            "Batch size",
            [
                (
                    f"sum(rate({BATCH_METRIC}_sum{{{m}}}[{window}])) "
                    f"/ sum(rate({BATCH_METRIC}_count{{{m}}}[{window}]))",
                    "mean batch",
                )
            ],
            "short",
            _thresholds(),
            "Mean size of the batches the batch scheduler ran (empty without --enable_batching).",
        ),
        _panel(
            4,
            "Error rate",
            [
                (
                    f'sum(rate({REQUESTS_METRIC}{{{m},status!="OK"}}[{window}])) '
                    f"/ sum(rate({REQUESTS_METRIC}{{{m}}}[{window}]))",
                    "errors",
                )
            ],
            "percentunit",
            _thresholds((e.max_error_rate, "red")),
            "Share of requests that did not end OK; red: the study's error limit.",
        ),
    ]


def _container_panels(e: Envelope) -> list[dict[str, Any]]:
    """What cAdvisor sees of the server's container: CPU against its allowance, memory."""
    c = f'container="{CONTAINER}"'
    window = WINDOW
    return [
        _panel(
            5,
            "CPU (cores)",
            [
                (f"sum(rate(container_cpu_usage_seconds_total{{{c}}}[{window}]))", "used"),
                (f"sum(rate(container_cpu_cfs_throttled_periods_total{{{c}}}[{window}]))", "throttled periods/s"),
            ],
            "short",
            _thresholds((e.cpu_cores, "orange"), (e.cpus_allocated, "red")),
            "Cores the server container uses (cAdvisor); orange: what the tuned config used, red: its allowance.",
        ),
        _panel(
            6,
            "Memory",
            [(f"sum(container_memory_working_set_bytes{{{c}}})", "working set")],
            "bytes",
            _thresholds((e.rss_mb * 2**20 if e.rss_mb else None, "orange")),
            "Working set of the server container (cAdvisor); orange: the peak RSS the tuning measured.",
        ),
    ]


def _daemon_panels(model_name: str, e: Envelope) -> list[dict[str, Any]]:
    """What the autotune daemon exports: its last retune's goodput, its gate, its trials."""
    return [
        _panel(
            7,
            "autotune: retune goodput",
            [(f'{DAEMON_GOODPUT}{{model="{model_name}"}}', "last feasible trial"), (f"{DAEMON_GATE}{{}}", "gate open")],
            "reqps",
            _thresholds((e.throughput_rps, "orange")),
            "The autotune daemon's last feasible trial of this model (a retune's re-measurement shows drift), "
            "and whether its resource gate lets trials run.",
        ),
        _panel(
            8,
            "autotune: trials",
            [(f"sum by (state) (increase({DAEMON_TRIALS}{{}}[1h]))", "{{state}}")],
            "short",
            _thresholds(),
            "Trials the autotune daemon measured in the last hour, by how they ended.",
        ),
    ]


def dashboard(model_name: str, envelope: Envelope, title_suffix: str = "") -> dict[str, Any]:
    """The dashboard JSON (Grafana's import format) for MODEL_NAME served with the tuned ENVELOPE."""
    panels = [
        *_server_panels(model_name, envelope),
        *_container_panels(envelope),
        *_daemon_panels(model_name, envelope),
    ]
    return {
        "title": f"TF Serving: {model_name}{title_suffix}",
        "uid": f"autotune-{model_name}"[:40],
        "tags": ["autotune", "tensorflow-serving"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]
        },
        "panels": panels,
    }


def envelope_of(metrics: dict[str, Any], study: Study) -> Envelope:
    """The envelope an export draws: the chosen row's (confirmed) metrics, as stored, and its job's study."""
    return Envelope(
        throughput_rps=metrics.get("throughput_rps"),
        latency_p99_ms=metrics.get("latency_p99_ms"),
        slo_p99_ms=study.slo_p99_ms,
        max_error_rate=study.max_error_rate,
        cpu_cores=metrics.get("cpu_cores"),
        cpus_allocated=metrics.get("cpus_allocated"),
        rss_mb=metrics.get("rss_mb"),
    )
