"""Retention: the window-by-window detail of old finished jobs goes; what reports, exports and drift read stays.

A trial's windows are what makes the store grow with every retune (each level keeps every window it measured);
once a job has finished, only its level summaries, metrics and objective values are read again. Pareto
snapshots, comparisons (every run of every confirmation), profiles and Optuna's tables are never pruned.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from autotune.errors import AutotuneError
from autotune.states import JobState
from autotune.store.db import Tables, db_error, db_now, engine, sqlite_file
from autotune.store.schema import JobRow, TrialRow

FINISHED = tuple(state for state in JobState if not state.active)  # done, failed, cancelled


@dataclass(frozen=True)
class Pruned:
    """What one prune found (and, unless a dry run, dropped)."""

    jobs: int  # finished jobs older than the cut-off that still held detail
    trials: int
    windows: int
    log_tails: int  # server log tails dropped with them
    cutoff: str  # the database's clock, ISO, UTC
    dry_run: bool
    bytes_before: int | None = None  # the SQLite file; None on other databases
    bytes_after: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def strip_windows(levels: list[Any]) -> tuple[list[Any], int]:
    """LEVELS with each level's windows emptied (its summary kept), and how many windows went."""
    kept, dropped = [], 0
    for level in levels or []:
        if isinstance(level, dict) and level.get("windows"):
            dropped += len(level["windows"])
            level = {**level, "windows": []}
        kept.append(level)
    return kept, dropped


class Retention(Tables):
    """Pruning by age, judged on the database's clock like every other time the store compares."""

    def prune(self, keep_days: float, dry_run: bool = False, vacuum: bool = False) -> Pruned:
        """Drop window detail and server log tails of jobs finished more than KEEP_DAYS ago."""
        if keep_days < 0:
            raise AutotuneError(f"--keep-days must be 0 or more, got {keep_days:g}")
        path = sqlite_file(self.url)
        before = _bytes(path)
        jobs = trials = windows = tails = 0
        with self._tx() as s:
            cutoff = db_now(s) - dt.timedelta(days=keep_days)
            old = select(JobRow.id).where(JobRow.state.in_([str(x) for x in FINISHED]), JobRow.finished_at < cutoff)
            touched: set[int] = set()
            for trial in s.scalars(select(TrialRow).where(TrialRow.job_id.in_(old))):
                levels, dropped = strip_windows(trial.levels)
                if not dropped and trial.server_log_tail is None:
                    continue
                touched.add(trial.job_id)
                trials, windows, tails = trials + 1, windows + dropped, tails + (trial.server_log_tail is not None)
                if not dry_run:
                    trial.levels, trial.server_log_tail = levels, None
            jobs = len(touched)
        if vacuum and not dry_run and path is not None:
            self._vacuum()
        after = _bytes(path)
        return Pruned(jobs, trials, windows, tails, cutoff.isoformat(timespec="seconds"), dry_run, before, after)

    def _vacuum(self) -> None:
        """Give the freed pages back to the file system (SQLite keeps them for reuse otherwise)."""
        try:
            raw = engine(self.url).raw_connection()  # VACUUM cannot run inside a transaction: below SQLAlchemy's
            try:
                cur = raw.cursor()
                cur.execute("VACUUM")
                cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                cur.close()
            finally:
                raw.close()
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise db_error(self.url, exc) from None


def _bytes(path: Path | None) -> int | None:
    """The SQLite database's size on disk, its write-ahead log included."""
    if path is None or not path.exists():
        return None
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
