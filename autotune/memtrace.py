"""Where a long-lived process's memory goes, job by job: a leak-hunting aid, off unless AUTOTUNE_TRACEMALLOC is set.

The soak measures that the daemon grows (about 0.4 MiB a job); this says where. Tracing slows Python and costs
memory of its own, so it is a diagnostic run's, never a default.
"""

from __future__ import annotations

import os
import tracemalloc

ENV = "AUTOTUNE_TRACEMALLOC"
# Our own bookkeeping and the import system are not what a job leaves behind.
_IGNORED = (
    tracemalloc.__file__,
    "<frozen importlib._bootstrap>",
    "<frozen importlib._bootstrap_external>",
    "<unknown>",
)


class MemoryTrace:
    """Snapshots after each job, compared with the one after the first: the sites that grew most since."""

    def __init__(self, frames: int = 8, top: int = 8) -> None:
        self.top = top
        self.base: tracemalloc.Snapshot | None = None
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames)

    @staticmethod
    def wanted() -> bool:
        return bool(os.environ.get(ENV))

    def after_job(self) -> list[str]:
        """One line per site that grew most since the first job (none after the first job itself)."""
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, pattern) for pattern in _IGNORED])
        if self.base is None:
            self.base = snap
            return []
        grew = [s for s in snap.compare_to(self.base, "traceback") if s.size_diff > 0][: self.top]
        return [
            _totals(),
            *(f"{s.size_diff / 1024:+.0f} KiB in {s.count_diff:+d} blocks at {_where(s.traceback)}" for s in grew),
        ]


def _totals() -> str:
    """The heaps RSS is made of that can be read: Python's (traced) and SQLite's own allocator, which tracemalloc
    cannot see (each connection's page cache grows with the database, up to its cache_size)."""
    line = f"python heap (traced) {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MiB"
    used = _sqlite_memory_used()
    return line if used is None else f"{line}; sqlite {used / 2**20:.1f} MiB"


def _sqlite_memory_used() -> int | None:
    """Bytes SQLite's allocator holds in this process (sqlite3_memory_used), None where it cannot be asked."""
    import ctypes

    try:
        import _sqlite3

        lib = ctypes.CDLL(_sqlite3.__file__)  # resolves through the libsqlite3 the module is linked to
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        return int(lib.sqlite3_memory_used())
    except (ImportError, OSError, AttributeError):
        return None


def _where(tb: tracemalloc.Traceback) -> str:
    """An allocation's innermost frames, the allocating line first and each caller after it, as file:line."""
    return " < ".join(f"{os.path.basename(f.filename)}:{f.lineno}" for f in reversed(list(tb)[-4:]))
