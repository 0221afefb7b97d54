"""Measurement windows: declared once, with defaults, help and limits, for the CLI, study files and jobs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from autotune.errors import AutotuneError


def _option(default: float, help_: str, problem: str) -> Any:
    return field(default=default, metadata={"help": help_, "problem": problem})


@dataclass(frozen=True)
class WindowOptions:
    """How long a load level is measured: window length, warm-up before it, and the window cap."""

    window_s: float = _option(2.0, "measurement window length, seconds", "must be > 0")
    warmup_s: float = _option(1.0, "warm-up per load level, seconds", "must be >= 0")
    # Fewer than 3 windows cannot show that the last ones agree.
    max_windows: int = _option(10, "window cap per load level", "must be >= 3")

    @staticmethod
    def help(name: str) -> str:
        """The CLI help of option NAME, with its default."""
        f = WindowOptions.__dataclass_fields__[name]
        return f"{f.metadata['help']} (default {f.default:g})"

    def problems(self) -> dict[str, str]:
        """Each out-of-range field and why (empty when all are valid)."""
        bad = {
            "window_s": not self.window_s > 0,
            "warmup_s": not self.warmup_s >= 0,
            "max_windows": not self.max_windows >= 3,
        }
        return {n: str(self.__dataclass_fields__[n].metadata["problem"]) for n, b in bad.items() if b}

    def with_overrides(self, **values: float | int | None) -> WindowOptions:
        """These options with every non-None value in VALUES replacing its field, checked."""
        merged = dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})
        for name, problem in merged.problems().items():
            raise AutotuneError(f"--{name.replace('_', '-')} {problem}, got {getattr(merged, name):g}")
        return merged


WINDOW_DEFAULTS = WindowOptions()
