"""The console-script entry: argv in, one command run, every error one line (JSON under --json)."""

from __future__ import annotations

import sys
from typing import Any

import typer

from autotune import notes, tables
from autotune.cli.app import app
from autotune.cli.common import EXIT_INTERRUPTED, EXIT_USER_ERROR, fail
from autotune.cli.daemon import status
from autotune.errors import AutotuneError
from autotune.procs import interrupt_on_sigterm

# Root options a user types after the command too (`autotune bench ... --quiet`): main() moves them first.
_ANYWHERE = ("--quiet", "--plain")


def _hoisted(argv: list[str]) -> list[str]:
    """ARGV with --quiet and --plain moved before the command (never past a `--`)."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:end] if a in _ANYWHERE]
    return [*flags, *(a for a in argv[:end] if a not in _ANYWHERE), *argv[end:]]


def _usage_error(exc: Any) -> str:
    """A usage error as one line, with where to find help (typer's own display is a usage block and a box)."""
    ctx = getattr(exc, "ctx", None)
    where = f" (see {ctx.command_path} -h)" if ctx is not None else ""
    return exc.format_message() + where


def _polled_status(argv: list[str]) -> bool:
    """Run `status [--json]` without typer's option parsing, whose import (pydantic) is most of what a call
    costs: a `watch autotune status` stays light on a host the daemon measures. False for any other command."""
    rest = [a for a in argv if a not in _ANYWHERE]
    if rest not in (["status"], ["status", "--json"]):
        return False
    notes.QUIET, tables.PLAIN = "--quiet" in argv, "--plain" in argv
    status(as_json=len(rest) == 2)
    return True


def main() -> None:
    """Console-script entry: user errors are one line (a JSON object under --json) and exit 1, never a traceback."""
    from typer.exceptions import TyperException  # usage errors: unknown options, bad values

    # SIGTERM takes the same clean path as Ctrl-C: servers and load generators are stopped.
    interrupt_on_sigterm()
    argv = _hoisted(sys.argv[1:])
    as_json = "--json" in argv
    try:
        if _polled_status(argv):
            sys.exit(0)
        # Not standalone: usage errors are ours to print, as one line like every other error.
        code = app(args=argv, standalone_mode=False)
    except AutotuneError as exc:
        fail(as_json, str(exc), EXIT_USER_ERROR)
    except TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `autotune` or `autotune models` alone: the help, as asked
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)
        fail(as_json, _usage_error(exc), exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        fail(as_json, "interrupted", EXIT_INTERRUPTED)
    except OSError as exc:  # the machine's refusal (a full disk, a read-only home): one line, as any other error
        where = f": {exc.filename}" if exc.filename else ""
        fail(as_json, f"{exc.strerror or exc}{where}", EXIT_USER_ERROR)
    sys.exit(code if isinstance(code, int) else 0)
