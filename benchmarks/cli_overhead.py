"""CPU cost of read-only commands: what a `watch autotune status` loop adds to the host's load.

Each command runs N times against a database that is already up to date (as on any host after its
first command); the figure is user+system CPU seconds of the whole process, median and range. With
--baseline DIR, the same commands run from another checkout (e.g. a `git worktree` of an older commit)
in the same run, so the ratio compares like with like on this machine.

    python benchmarks/cli_overhead.py [--runs 7] [--baseline /tmp/old-checkout]
"""

from __future__ import annotations

import argparse
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


def measure(checkout: Path, runs: int, home: Path) -> dict[str, list[float]]:
    env = {**os.environ, "AUTOTUNE_HOME": str(home), "PYTHONPATH": str(checkout)}
    env.pop("AUTOTUNE_DB_URL", None)
    base = [sys.executable, "-m", "autotune.cli"]
    subprocess.run([*base, "db", "upgrade"], env=env, cwd=checkout, capture_output=True, timeout=120, check=True)
    return {" ".join(c): [cpu_seconds([*base, *c], env, checkout) for _ in range(runs)] for c in COMMANDS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="another checkout to measure in the same run")
    a = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        ours = measure(here, a.runs, Path(tmp) / "ours")
        theirs = measure(a.baseline, a.runs, Path(tmp) / "base") if a.baseline else None
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
