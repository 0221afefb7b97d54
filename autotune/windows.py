"""Measurement windows: declared once, with defaults, help and limits, for the CLI, study files and jobs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from autotune.options import checked, declared, option, problems


@dataclass(frozen=True)
class WindowOptions:
    """How long a load level is measured: window length, warm-up before it, and the window cap."""

    window_s: float = option(2.0, "measurement window length, seconds", lo=0, lo_open=True)
    warmup_s: float = option(1.0, "warm-up per load level, seconds", lo=0)
    # Fewer than 3 windows cannot show that the last ones agree.
    max_windows: int = option(10, "window cap per load level", lo=3)

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
