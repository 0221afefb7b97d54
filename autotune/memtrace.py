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
        self.base_heaps: tuple[int, int | None] = (0, None)
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames)

    @staticmethod
    def wanted() -> bool:
        return bool(os.environ.get(ENV))

    def after_job(self) -> list[str]:
        """How much each readable heap grew since the first job, then one line per site that grew most (nothing
        after the first job itself)."""
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, pattern) for pattern in _IGNORED])
        if self.base is None:
            self.base, self.base_heaps = snap, _heaps()
            return []
        grew = [s for s in snap.compare_to(self.base, "traceback") if s.size_diff > 0][: self.top]
        return [
            self._heaps_grown(),
            *(f"{s.size_diff / 1024:+.0f} KiB in {s.count_diff:+d} blocks at {_where(s.traceback)}" for s in grew),
        ]

    def _heaps_grown(self) -> str:
        (python, sqlite), (python0, sqlite0) = _heaps(), self.base_heaps
        line = f"python heap (traced) {(python - python0) / 2**20:+.2f} MiB"
        if sqlite is None or sqlite0 is None:
            return line
        return f"{line}; sqlite {(sqlite - sqlite0) / 2**20:+.2f} MiB"


def _heaps() -> tuple[int, int | None]:
    """The heaps RSS is made of that can be read, in bytes: Python's (traced) and SQLite's own allocator, which
    tracemalloc cannot see (each connection's page cache grows with the database, up to its cache_size)."""
    return tracemalloc.get_traced_memory()[0], _sqlite_memory_used()


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
