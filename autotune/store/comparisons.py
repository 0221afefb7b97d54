"""Comparisons: every compare and confirmation kept whole, both sides of every run."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from autotune.store.db import Tables
from autotune.store.schema import ComparisonRow


class Comparisons(Tables):
    """compare's and the confirmation's records, newest last."""

    def record_comparison(
        self, kind: str, model: str, result: dict[str, Any], verdict: str | None = None, job_id: int | None = None
    ) -> int:
        """Store one comparison (KIND: compare or confirm); its id."""
        if kind not in ("compare", "confirm"):
            raise ValueError(f"a comparison is a compare or a confirm, got {kind!r}")
        with self._tx() as s:
            row = ComparisonRow(kind=kind, model=model, result=result, verdict=verdict, job_id=job_id)
            s.add(row)
            s.flush()
            return row.id

    def comparisons(self, model: str | None = None) -> list[ComparisonRow]:
        """Stored comparisons, of MODEL if given, oldest first."""
        with self._tx() as s:
            query = select(ComparisonRow).order_by(ComparisonRow.id)
            if model is not None:
                query = query.where(ComparisonRow.model == model)
            rows = list(s.scalars(query))
            return rows
