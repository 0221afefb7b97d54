"""What every benchmark script prints with its figures: the machine, the date, the command."""

from __future__ import annotations

import datetime as dt
import platform
import sys

from autotune.fingerprint import host_info


def machine() -> str:
    """The host as autotune fingerprints it, in one line."""
    info = host_info()
    gpus = ", ".join(info["gpus"]) or "no GPU"
    return (
        f"{info['cpu_model']}, {info['cpus']} cores, {info['memory_gb']} GiB, "
        f"{platform.system()} {platform.release()}, {gpus}, TensorFlow {info['tensorflow']}"
    )


def provenance(script: str) -> list[str]:
    """Markdown lines: machine, UTC date, the command as run."""
    return [
        f"- machine: {machine()}",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `python benchmarks/{script} {' '.join(sys.argv[1:])}`",
    ]
