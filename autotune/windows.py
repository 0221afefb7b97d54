"""Measurement windows: declared once, with defaults, help and limits, for the CLI, study files and jobs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from autotune.options import checked, declared, option, problems


@dataclass(frozen=True)
class WindowOptions:
    """How a load level is measured: window length, warm-up before it, the window cap, and when its last
    windows count as stable (perf_analyzer's stability percentage; an unstable level is never exported)."""

    window_s: float = option(2.0, "measurement window length, seconds", lo=0, lo_open=True)
    warmup_s: float = option(1.0, "warm-up per load level, seconds", lo=0)
    # Fewer than 3 windows cannot show that the last ones agree.
    max_windows: int = option(10, "window cap per load level", lo=3)
    # As fractions, (max - min) / mean of the last windows' chunks (3 of them: their spread stays below 3).
    tolerance: float = option(
        0.10,
        "stable when the last windows' throughputs (and the model warm-up's p50s) spread at most this",
        lo=0,
        lo_open=True,
    )
    # p99 of a chunk of ~70 requests is nearly its maximum: its sampling spread is a few times the
    # throughput's, so the same 10% would call a steady server unstable.
    p99_tolerance: float = option(0.20, "stable when the last windows' p99s spread at most this", lo=0, lo_open=True)

    @staticmethod
    def help(name: str) -> str:
        """The CLI help of option NAME, with its default."""
        return declared(WindowOptions, name).help_text()

    def problems(self) -> dict[str, str]:
        """Each out-of-range field and why (empty when all are valid)."""
        return problems(self)

    def with_overrides(self, **values: float | int | None) -> WindowOptions:
        """These options with every non-None value in VALUES replacing its field, checked."""
        return checked(dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None}))


WINDOW_DEFAULTS = WindowOptions()
