"""Process helpers: a command run for its output, and what happens to it when the caller is interrupted."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from autotune.procs import run_command


def test_a_command_gives_its_exit_code_and_output() -> None:
    done = run_command([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"])
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_an_interrupted_caller_passes_sigterm_on_and_waits_for_the_command_to_clean_up(tmp_path: Path) -> None:
    # The command takes half a second to stop what it started: subprocess.run would SIGKILL it 0.25 s in.
    cleaned = tmp_path / "cleaned"
    child = (
        "import pathlib, signal, sys, time\n"
        "def stop(*_):\n"
        f"    time.sleep(0.5); pathlib.Path({str(cleaned)!r}).write_text('stopped'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "time.sleep(60)\n"
    )

    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0)  # Ctrl-C, a second into the command
    try:
        with pytest.raises(KeyboardInterrupt):
            run_command([sys.executable, "-c", child])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert cleaned.read_text() == "stopped"
