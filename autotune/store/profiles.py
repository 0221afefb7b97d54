"""The profile cache: one measured profile per model content and host fingerprint."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from autotune.store.db import Tables
from autotune.store.schema import ProfileRow, utcnow


def _row(s: Session, content_hash: str, host_fingerprint: str) -> ProfileRow | None:
    where = (ProfileRow.content_hash == content_hash, ProfileRow.host_fingerprint == host_fingerprint)
    return s.scalar(select(ProfileRow).where(*where))


class Profiles(Tables):
    """Profiles by (model content hash, host fingerprint); a new measurement replaces the old."""

    def get(self, content_hash: str, host_fingerprint: str) -> dict[str, Any] | None:
        with self._tx() as s:
            row = _row(s, content_hash, host_fingerprint)
            return None if row is None else dict(row.data)

    def put(self, content_hash: str, host_fingerprint: str, model: str, data: dict[str, Any]) -> None:
        with self._tx() as s:
            row = _row(s, content_hash, host_fingerprint)
            if row is None:
                s.add(ProfileRow(content_hash=content_hash, host_fingerprint=host_fingerprint, model=model, data=data))
            else:
                row.model, row.data, row.created_at = model, data, utcnow()

    def other_hosts(self, content_hash: str) -> list[str]:
        """Fingerprints of hosts that profiled this model content (to say why this host has none)."""
        with self._tx() as s:
            rows = s.scalars(select(ProfileRow.host_fingerprint).where(ProfileRow.content_hash == content_hash))
            return list(rows)
