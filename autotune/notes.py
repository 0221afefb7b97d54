"""Notes and warnings on stderr: one line each, never wrapped, said once per command; `--quiet` silences notes."""

from __future__ import annotations

import re

from autotune.tables import err

# Set by the CLI's --quiet: notes (which backend, what runs) go; warnings and errors stay.
QUIET = False

_said: set[str] = set()


def one_line(text: str) -> str:
    """TEXT with every run of whitespace, newlines included, as one space: a log line is one line."""
    return re.sub(r"\s+", " ", text).strip()


def _say(text: str) -> None:
    line = one_line(text)
    if line in _said:
        return
    _said.add(line)
    # soft_wrap: rich would otherwise fold the line at 80 columns when stderr is a log or a pipe.
    err.print(line, markup=False, highlight=False, soft_wrap=True)


def note(text: str) -> None:
    """Say what autotune chose or does (the backend, what runs), unless --quiet."""
    if not QUIET:
        _say(text)


def warn(text: str) -> None:
    """Say what to doubt or guard against; --quiet keeps these."""
    _say(text)
