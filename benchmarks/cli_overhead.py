"""CPU cost of read-only commands: what a `watch autotune status` loop adds to the host's load.

Each command runs N times against a database that is up to date and holds what a host's database holds
after some use (JOBS finished jobs of tiny on this host, TRIALS trials each, a frozen front each, a
schedule), so `status` lists jobs and `pareto` reads a real front. The figure is user+system CPU seconds
of the whole process. With --baseline DIR (a checkout of an older commit, e.g. a `git worktree`), both
checkouts run interleaved, run by run, in alternating order, on identical copies of the database; the
ratio is the median of the per-run ratios. A command that exits non-zero is flagged, not hidden. With
--daemon, an idle `autotune daemon` runs on each copy meanwhile (as under `watch autotune status` on a host
that tunes): `status` then reads the daemon's status file; the daemon's own CPU is not counted.

    python benchmarks/cli_overhead.py [--runs 9] [--daemon] [--baseline /tmp/old-checkout]
        [--out data/cli-overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from _common import provenance

from autotune.fingerprint import fingerprint, host_info
from autotune.procs import interrupt_on_sigterm
from autotune.states import JobState, TrialState
from autotune.store import Store
from autotune.store.schema import ModelRow

COMMANDS = (
    ["status", "--json"],
    ["pareto", "--model", "tiny", "--json"],
    ["schedule", "list", "--json"],
    ["--help"],
    ["--version"],
)


def populate(db: Path, jobs: int, trials: int) -> None:
    """JOBS finished tuning jobs of tiny on this host with TRIALS trials each, and one schedule."""
    store = Store(f"sqlite:///{db}")
    info = host_info()
    host_id = store.host(info, fingerprint(info))
    with store._tx() as s:
        model = ModelRow(name="tiny", path="/models/tiny", version=1, content_hash="0" * 64, signature={})
        s.add(model)
        s.flush()
        model_id = model.id
    for j in range(jobs):
        job_id = store.create_job(
            model_id=model_id,
            host_id=host_id,
            study_name=f"bench/tiny/{j}",
            study={"objectives": {"throughput_rps": "maximize", "latency_p99_ms": "minimize"}},
            settings={},
            backend="local",
            trials_total=trials,
            minutes=10.0,
        )
        for n in range(trials):
            rps, p99 = 100.0 + 10 * n, 5.0 + n
            store.begin_trial(job_id, n, {"enable_batching": n % 2 == 1, "max_batch_size": 2**n})
            metrics = {"throughput_rps": rps, "latency_p99_ms": p99, "stable": True, "error_rate": 0.0}
            fields = {"metrics": metrics, "objective_values": [rps, p99], "feasible": True}
            store.finish_trial(job_id, n, state=TrialState.complete, levels=[{"windows": [{}] * 5}], **fields)
        store.finish_job(job_id, JobState.done)
    store.add_schedule("tiny", "0 2 * * *", host_id, trials, None)


def run_once(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """(user+system CPU seconds, exit code) of one child process, from the kernel's accounting of reaped children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # From the checkout itself: `python -m` puts the working directory first on sys.path.
    code = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=120, check=False).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), code


def start_daemon(checkout: Path, env: dict[str, str], home: Path, stack: ExitStack) -> None:
    """An idle daemon on HOME's database, stopped (and reaped, so its CPU is never a run's) when STACK closes."""
    log = stack.enter_context(open(home / "daemon.log", "wb"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "autotune.cli", "daemon", "--metrics-port", "0"],
        env=env,
        cwd=checkout,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def stop() -> None:
        proc.terminate()
        proc.wait(60)

    stack.callback(stop)
    deadline = time.monotonic() + 120
    while not list(home.glob("daemon-*.json")):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the daemon in {home} did not come up: see {home / 'daemon.log'}")
        time.sleep(0.5)
    time.sleep(5)  # past its start-up work: recovery and its first job list


def measure(
    checkouts: list[Path], runs: int, db: Path, tmp: Path, stack: ExitStack, daemon: bool = False
) -> list[dict[str, dict[str, list]]]:
    """Per checkout and command: CPU seconds and exit codes of each run."""
    setups = []
    for i, checkout in enumerate(checkouts):
        home = tmp / f"home{i}"
        home.mkdir()
        shutil.copy(db, home / "autotune.db")
        env = {**os.environ, "AUTOTUNE_HOME": str(home), "PYTHONPATH": str(checkout)}
        env.pop("AUTOTUNE_DB_URL", None)
        if daemon:
            start_daemon(checkout, env, home, stack)
        setups.append((checkout, env))
    base = [sys.executable, "-m", "autotune.cli"]
    results = [{" ".join(c): {"cpu_s": [], "exit": []} for c in COMMANDS} for _ in checkouts]
    for r in range(runs):
        for command in COMMANDS:
            order = list(range(len(checkouts)))
            if r % 2:
                order.reverse()  # neither side always goes first
            for i in order:
                checkout, env = setups[i]
                cpu, code = run_once([*base, *command], env, checkout)
                results[i][" ".join(command)]["cpu_s"].append(cpu)
                results[i][" ".join(command)]["exit"].append(code)
    return results


def _cell(values: list[float], exits: list[int]) -> str:
    flag = "" if not any(exits) else f" (exit {max(set(exits), key=exits.count)})"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f}){flag}"


def main() -> None:
    interrupt_on_sigterm()  # a SIGTERM stops what it started, as Ctrl-C does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--baseline", type=Path, help="another checkout to measure in the same run")
    parser.add_argument("--daemon", action="store_true", help="with an idle daemon running on each database")
    parser.add_argument("--out", type=Path, help="write every run's CPU seconds and exit codes here (JSON)")
    a = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        db = Path(tmp) / "seed.db"
        populate(db, a.jobs, a.trials)
        measured = measure([here, a.baseline] if a.baseline else [here], a.runs, db, Path(tmp), stack, a.daemon)
    ours, theirs = measured[0], (measured[1] if a.baseline else None)
    lines = [*provenance("cli_overhead.py"), f"- store: {a.jobs} jobs of {a.trials} trials on this host, 1 schedule"]
    if a.daemon:
        lines.append("- an idle `autotune daemon` ran on each database (its CPU not counted)")
    if a.out:
        a.out.write_text(json.dumps({"ours": ours, "baseline": theirs, "provenance": lines}, indent=1))
    print("\n".join(lines))
    print()
    head = "| command | CPU-s, median (min-max) |" + (" baseline | per-run ratio, median (min-max) |" if theirs else "")
    print(head)
    print("|---|---|" + ("---|---|" if theirs else ""))
    for name, got in ours.items():
        row = f"| `autotune {name}` | {_cell(got['cpu_s'], got['exit'])} |"
        if theirs:
            base = theirs[name]
            ratios = [x / y for x, y in zip(got["cpu_s"], base["cpu_s"], strict=True)]
            row += f" {_cell(base['cpu_s'], base['exit'])} |"
            row += f" x{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |"
        print(row)


if __name__ == "__main__":
    main()
