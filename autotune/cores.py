"""Which cores the server and the load generator run on (pure, plus the one call that applies it)."""

from __future__ import annotations

import os
from collections.abc import Callable

# The generator is one Python process (one core's worth under the GIL): one core of its own is enough.
MIN_CORES_TO_SPLIT = 4


def schedulable_cores() -> list[int]:
    """The cores this process may run on (its affinity), falling back to all of them."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def pin_to(cores: list[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that pins the child (and every thread it will start) to CORES."""
    if not cores:
        return None
    chosen = set(cores)
    return lambda: os.sched_setaffinity(0, chosen)
