"""Read a server's own Prometheus counters (TF Serving's names) to cross-check the load generator.

TF Serving exposes them at /monitoring/prometheus/metrics when started with a
monitoring config that enables prometheus_config; so does autotune-model-server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

METRICS_PATH = "/monitoring/prometheus/metrics"
# TF Serving's metric names (its "/tensorflow/serving/..." with "/" turned to ":"); dashboards query these too.
REQUESTS_METRIC = ":tensorflow:serving:request_count"
LATENCY_METRIC = ":tensorflow:serving:request_latency"
BATCH_METRIC = ":tensorflow:serving:batching:processed_batch_size"


@dataclass(frozen=True)
class ServerCounters:
    """Cumulative counters for one model, as the server counts them."""

    requests: float = 0.0
    latency_sum_us: float = 0.0
    latency_count: float = 0.0
    batches: float = 0.0
    batched_items: float = 0.0

    def since(self, before: ServerCounters) -> dict[str, Any]:
        """What happened between BEFORE and now: requests, mean latency, mean batch size."""
        lat_n = self.latency_count - before.latency_count
        lat_us = self.latency_sum_us - before.latency_sum_us
        batches = self.batches - before.batches
        items = self.batched_items - before.batched_items
        return {
            "requests": int(self.requests - before.requests),
            "latency_mean_ms": round(lat_us / lat_n / 1000, 3) if lat_n else None,
            "batches": int(batches),
            "mean_batch_size": round(items / batches, 3) if batches else None,
        }


def parse(text: str, model_name: str) -> ServerCounters:
    """Sum the counters of MODEL_NAME in a Prometheus text exposition."""
    totals = {"requests": 0.0, "latency_sum_us": 0.0, "latency_count": 0.0, "batches": 0.0, "batched_items": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("model_name") != model_name:
                continue
            if family.name == REQUESTS_METRIC and not s.name.endswith("_created"):
                totals["requests"] += s.value
            elif family.name == LATENCY_METRIC and s.name.endswith("_sum"):
                totals["latency_sum_us"] += s.value
            elif family.name == LATENCY_METRIC and s.name.endswith("_count"):
                totals["latency_count"] += s.value
            elif family.name == BATCH_METRIC and s.name.endswith("_sum"):
                totals["batched_items"] += s.value
            elif family.name == BATCH_METRIC and s.name.endswith("_count"):
                totals["batches"] += s.value
    return ServerCounters(**totals)


def scrape(base_url: str, model_name: str, timeout_s: float = 5.0) -> ServerCounters | None:
    """The counters now of the server answering at BASE_URL (http://HOST:PORT), or None when it exposes no
    metrics (monitoring off, or an error)."""
    try:
        reply = requests.get(f"{base_url}{METRICS_PATH}", timeout=timeout_s)
        if reply.status_code != 200:
            return None
        return parse(reply.text, model_name)
    except (requests.RequestException, ValueError):
        return None
