"""The profile cache: one measured profile per model content and host fingerprint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from autotune.errors import AutotuneError
from autotune.store.db import Tables
from autotune.store.schema import ProfileRow, utcnow

if TYPE_CHECKING:
    from autotune.models.resolve import ModelRef


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

    def of_model(self, model: ModelRef, host_fingerprint: str, spec: str | None = None) -> dict[str, Any]:
        """The profile of MODEL's content on the host HOST_FINGERPRINT; a one-line error saying how to get one."""
        from autotune.models.content import content_hash

        digest = content_hash(model.version_path)
        doc = self.get(digest, host_fingerprint)
        if doc is None:
            others = self.other_hosts(digest)
            where = f"; {len(others)} profile(s) of it come from other hosts, which do not carry over" if others else ""
            how = f"autotune profile --model {spec or model.name}"
            raise AutotuneError(f"no profile of {model.name} on this host{where}: run {how}")
        return doc
