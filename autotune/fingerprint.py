"""Host fingerprint: results only carry over between runs on the same hardware and software."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def host_info() -> dict[str, Any]:
    """CPU model, cores, memory, GPUs and driver, TensorFlow version."""
    from autotune import gpu

    return {
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count() or 1,
        "memory_gb": round(psutil.virtual_memory().total / 2**30),
        "gpus": gpu.describe(),
        "tensorflow": _version("tensorflow"),
        "machine": platform.machine(),
    }


def fingerprint(info: dict[str, Any]) -> str:
    """A short stable hash of INFO."""
    return hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()[:16]
