"""CPU cost of read-only commands: what a `watch autotune status` loop adds to the host's load.

Each command runs N times against a database that is already up to date (as on any host after its
first command); the figure is user+system CPU seconds of the whole process, median and range. With
--baseline DIR, the same commands run from another checkout (e.g. a `git worktree` of an older commit)
in the same run, so the ratio compares like with like on this machine.

    python benchmarks/cli_overhead.py [--runs 7] [--baseline /tmp/old-checkout] [--out data/cli-overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import provenance

COMMANDS = (
    ["status", "--json"],
    ["pareto", "--model", "tiny", "--json"],
    ["schedule", "list", "--json"],
    ["--help"],
    ["--version"],
)


def cpu_seconds(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """User+system CPU of one child process, from the kernel's accounting of reaped children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # From the checkout itself: `python -m` puts the working directory first on sys.path.
    subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=120, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _setup(checkout: Path, home: Path) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "AUTOTUNE_HOME": str(home), "PYTHONPATH": str(checkout)}
    env.pop("AUTOTUNE_DB_URL", None)
    base = [sys.executable, "-m", "autotune.cli"]
    subprocess.run([*base, "db", "upgrade"], env=env, cwd=checkout, capture_output=True, timeout=120, check=True)
    return base, env


def measure(checkouts: list[Path], runs: int, tmp: Path) -> list[dict[str, list[float]]]:
    """CPU seconds per command and run for each checkout, interleaved (run 1 of each, then run 2, ...) so that
    a machine getting busier over the run weighs on every side alike."""
    setups = [_setup(c, tmp / str(i)) for i, c in enumerate(checkouts)]
    results: list[dict[str, list[float]]] = [{" ".join(c): [] for c in COMMANDS} for _ in checkouts]
    for _ in range(runs):
        for command in COMMANDS:
            for (base, env), checkout, out in zip(setups, checkouts, results, strict=True):
                out[" ".join(command)].append(cpu_seconds([*base, *command], env, checkout))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="another checkout to measure in the same run")
    parser.add_argument("--out", type=Path, help="write every run's CPU seconds here (JSON)")
    a = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        measured = measure([here, a.baseline] if a.baseline else [here], a.runs, Path(tmp))
    ours, theirs = measured[0], (measured[1] if a.baseline else None)
    if a.out:
        a.out.write_text(
            json.dumps({"ours": ours, "baseline": theirs, "provenance": provenance("cli_overhead.py")}, indent=1)
        )
    print("\n".join(provenance("cli_overhead.py")))
    print()
    head = "| command | CPU-s, median (min-max) |" + (" baseline | ratio |" if theirs else "")
    print(head)
    print("|---|---|" + ("---|---|" if theirs else ""))
    for name, values in ours.items():
        row = f"| `autotune {name}` | {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f}) |"
        if theirs:
            base = theirs[name]
            row += f" {statistics.median(base):.2f} | x{statistics.median(values) / statistics.median(base):.2f} |"
        print(row)


if __name__ == "__main__":
    main()
