"""What serving a request costs: allocated resources per 1,000 answered requests, at the study's prices (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prices:
    """Prices per hour of what a server is allocated; set them to your own (e.g. $ per vCPU-hour) in `[cost]`.

    The defaults count one unit per core-hour and per GiB-hour of GPU memory (an on-demand GPU's hourly price
    divided by its memory is close to a vCPU's), so costs compare across configs even unpriced.
    """

    core_hour: float = 1.0
    gpu_gib_hour: float = 1.0


PRICE_DEFAULTS = Prices()


def cost_per_1k_requests(
    throughput_rps: float | None, cores_allocated: float, gpu_mem_mb: float | None, prices: Prices
) -> float | None:
    """The allocated cores (and GPU memory) for the time 1,000 requests take at THROUGHPUT_RPS, priced; None if idle."""
    if not throughput_rps or throughput_rps <= 0:
        return None
    per_hour = cores_allocated * prices.core_hour + (gpu_mem_mb or 0.0) / 1024 * prices.gpu_gib_hour
    seconds = 1000.0 / throughput_rps
    return per_hour * seconds / 3600.0
