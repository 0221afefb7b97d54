"""What this CPU computes natively, as the knobs that depend on it need to know (Linux /proc/cpuinfo)."""

from __future__ import annotations

from pathlib import Path

# oneDNN runs bfloat16 natively on these (AVX-512 BF16, or AMX tiles); elsewhere it emulates it, slower than float32.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The feature flags of the first CPU in CPUINFO (default: this host's /proc/cpuinfo); empty if unreadable."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def bf16_problem(flags: set[str] | None = None) -> str | None:
    """Why bfloat16 mixed precision is not worth searching on this CPU, or None when it computes bf16 natively."""
    flags = cpu_flags() if flags is None else flags
    if any(f in flags for f in NATIVE_BF16_FLAGS):
        return None
    return f"this CPU has no native bfloat16 ({' or '.join(NATIVE_BF16_FLAGS)}): oneDNN would emulate it"
