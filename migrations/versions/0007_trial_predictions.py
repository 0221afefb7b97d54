"""predictions: what the performance model predicted for each trial of a model-seeded job, and its front (issue 26)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = ("predicted_throughput_rps", "predicted_latency_p99_ms", "predicted_cpu_cores")


def upgrade() -> None:
    with op.batch_alter_table("autotune_trials") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Double(), nullable=True))
    with op.batch_alter_table("autotune_jobs") as batch:
        batch.add_column(sa.Column("predicted_front", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("autotune_jobs") as batch:
        batch.drop_column("predicted_front")
    with op.batch_alter_table("autotune_trials") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
