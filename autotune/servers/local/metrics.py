"""Prometheus metrics under TF Serving's names, served when monitoring is enabled."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest

from autotune.servers.scrape import BATCH_METRIC, LATENCY_METRIC, REQUESTS_METRIC

# TF Serving exports no *_created series; neither do we.
disable_created_metrics()

# TF Serving reports request latency in microseconds.
_LATENCY_BUCKETS_US = tuple(float(10 * 1.8**i) for i in range(33))
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    """Request count, request latency and processed batch sizes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            REQUESTS_METRIC, "Requests by status.", ["model_name", "status"], registry=self.registry
        )
        self.latency = Histogram(
            LATENCY_METRIC,
            "Request latency in microseconds.",
            ["model_name", "API", "entrypoint"],
            buckets=_LATENCY_BUCKETS_US,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            BATCH_METRIC,
            "Sizes of the batches the batch scheduler ran.",
            ["model_name"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )

    def observe(self, model_name: str, api: str, entrypoint: str, status: str, seconds: float) -> None:
        """Record one finished request of MODEL_NAME."""
        self.requests.labels(model_name, status).inc()
        self.latency.labels(model_name, api, entrypoint).observe(seconds * 1e6)

    def batch_observer(self, model_name: str) -> Callable[[int], None]:
        """What MODEL_NAME's batch op calls with the size of each batch it ran."""
        return lambda size: self.batch_size.labels(model_name).observe(size)

    def exposition(self) -> bytes:
        """The metrics page as TF Serving writes it: a counter's samples carry its own name, no `_total` suffix
        (prometheus_client adds one), so a dashboard built against either server queries the same series."""
        counter = REQUESTS_METRIC.encode()
        return generate_latest(self.registry).replace(counter + b"_total{", counter + b"{")
