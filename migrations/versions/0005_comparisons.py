"""comparisons: every compare and confirmation with both sides of every run (issue 25)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "autotune_comparisons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["autotune_jobs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_autotune_comparisons_model", "autotune_comparisons", ["model"])
    op.create_index("ix_autotune_comparisons_job_id", "autotune_comparisons", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_autotune_comparisons_job_id", table_name="autotune_comparisons")
    op.drop_index("ix_autotune_comparisons_model", table_name="autotune_comparisons")
    op.drop_table("autotune_comparisons")
