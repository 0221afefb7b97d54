"""schedule runs: when each firing was due, and the runs skipped while the previous retune had not started (issue 29)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("autotune_schedules") as batch:
        batch.add_column(sa.Column("last_due_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("skipped_runs", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_skip_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("autotune_schedules") as batch:
        batch.drop_column("last_skip_reason")
        batch.drop_column("skipped_runs")
        batch.drop_column("last_due_at")
