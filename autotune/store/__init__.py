"""The store: autotune's tables (jobs, trials, Pareto snapshots) beside Optuna's, in one database.

`Store(url)` is the one way in; its contract is written once, in the docstrings of
the parts it is made of (one module per concern), and one test suite
(tests/test_store_contract.py) holds every backend database to it.
"""

from __future__ import annotations

from autotune.store.comparisons import Comparisons
from autotune.store.drift import DriftLog
from autotune.store.queries import PreviousFront, Queries
from autotune.store.queue import JobQueue, Orphan, job_summary
from autotune.store.records import Records
from autotune.store.schedules import Schedules

__all__ = ["Orphan", "PreviousFront", "Store", "job_summary"]


class Store(Records, JobQueue, Queries, Schedules, DriftLog, Comparisons):
    """autotune's tables on one database URL (default: AUTOTUNE_DB_URL or the SQLite file under AUTOTUNE_HOME)."""
