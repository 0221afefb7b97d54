"""What the daemon publishes for `status`: the jobs and drift checks, so a `watch autotune status` reads a file.

A `status` call that opened the database paid for SQLAlchemy's import and a query of
every job: half a CPU-second, on a host the daemon is measuring. The daemon already
holds the database open, so it writes the job list into its status file when a job
is claimed, a trial ends, the gate opens or closes, a job ends, a command marks the
jobs changed, and at least every EVERY_S seconds (for other hosts' jobs).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from autotune.daemon_control import StatusFile, snapshot_is_current
from autotune.errors import AutotuneError
from autotune.store import Store, job_summary

log = logging.getLogger("autotune.daemon")


class Snapshot:
    """The job list in the daemon's status file, kept current."""

    def __init__(self, store: Store, status: StatusFile, url: str, every_s: float) -> None:
        self.store, self.status, self.url, self.every_s = store, status, url, every_s
        self._at = float("-inf")

    def publish(self) -> None:
        """Query the jobs, drift checks and schedules now and write them into the status file."""
        # Stamped before the query: a command's change committed while it runs stays newer than the snapshot.
        at = time.time()
        try:
            jobs = [job_summary(j) for j in self.store.jobs()]
            drift = self.store.drift_checks()
            schedules = self.store.schedules()
        except AutotuneError as exc:
            log.warning("status snapshot not written: %s", exc)
            return
        self.status.update(jobs=jobs, drift=drift, schedules=schedules, jobs_at=at)
        self._at = time.monotonic()

    def refresh(self) -> None:
        """Publish when a command changed the jobs since the last snapshot, or when it is EVERY_S old."""
        if time.monotonic() - self._at >= self.every_s or not snapshot_is_current(self.status.data, self.url):
            self.publish()

    def waiting(self, job_id: int, reason: str | None) -> dict[str, Any]:
        """The status fields for JOB_ID waiting (REASON) or not (None): its row's note, at once, without a query."""
        jobs = [{**j, "waiting": reason} if j.get("id") == job_id else j for j in self.status.data.get("jobs", [])]
        return {"jobs": jobs}
