"""What every benchmark script prints with its figures: the machine, the date, the command."""

from __future__ import annotations

import csv
import datetime as dt
import platform
import sys
from pathlib import Path
from typing import Any

from autotune.fingerprint import host_info
from autotune.knobs import ServingConfig


def machine() -> str:
    """The host as autotune fingerprints it, in one line."""
    info = host_info()
    gpus = ", ".join(info["gpus"]) or "no GPU"
    return (
        f"{info['cpu_model']}, {info['cpus']} cores, {info['memory_gb']} GiB, "
        f"{platform.system()} {platform.release()}, {gpus}, TensorFlow {info['tensorflow']}"
    )


def changed_knobs(config: dict[str, Any]) -> dict[str, Any]:
    """The knobs of a config dict that differ from ServingConfig()'s (batching knobs all count when on)."""
    defaults = ServingConfig().to_dict()
    return {k: v for k, v in config.items() if defaults.get(k) != v}


def provenance(script: str) -> list[str]:
    """Markdown lines: machine, UTC date, the command as run."""
    return [
        f"- machine: {machine()}",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `python benchmarks/{script} {' '.join(sys.argv[1:])}`",
    ]


def write_csv(path: Path, script: str, rows: list[dict[str, Any]]) -> None:
    """ROWS as CSV under '#' lines of provenance (machine, date, command), as the data files are kept."""
    with path.open("w", newline="") as f:
        for line in provenance(script):
            f.write(f"# {line.removeprefix('- ')}\n")
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def stop_if_interrupted(failure_reason: str | None, why: str = "interrupted") -> None:
    """End the script when a trial was cut short by Ctrl-C or SIGTERM (its server is already stopped), rather than
    go on to the next; WHY is the one line it exits with."""
    if failure_reason == "interrupted":
        raise SystemExit(why)
