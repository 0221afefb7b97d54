"""The leak-hunting aid (AUTOTUNE_TRACEMALLOC): after each job, the sites that grew most since the first."""

from __future__ import annotations

import tracemalloc

from autotune.memtrace import MemoryTrace

_KEPT: list[bytes] = []


def _a_job_that_leaks() -> None:
    _KEPT.extend(bytes(1024) for _ in range(200))  # 200 KiB kept for good, as a leak would


def test_the_site_that_keeps_memory_job_after_job_is_named_first():
    was_tracing = tracemalloc.is_tracing()
    try:
        trace = MemoryTrace()
        _a_job_that_leaks()
        assert trace.after_job() == []  # the first job is the baseline
        _a_job_that_leaks()
        _a_job_that_leaks()
        totals, *lines = trace.after_job()
        # First the heaps that can be read (SQLite's own allocator is invisible to tracemalloc), then the sites.
        assert totals.startswith("python heap (traced) ") and "; sqlite " in totals, totals
        grown = float(totals.removeprefix("python heap (traced) ").split(" MiB")[0])
        assert 0.35 < grown < 0.6, totals  # growth since the first job: two leaks of 200 KiB
        # One site per call path, the allocating line first: both jobs since the first, about 200 KiB each.
        top = lines[:2]
        assert all(line.split(" at ")[1].startswith("test_memtrace.py:13 <") for line in top), lines
        assert all(190 < float(line.split(" KiB")[0]) < 260 for line in top), lines
    finally:
        _KEPT.clear()
        if not was_tracing:
            tracemalloc.stop()
