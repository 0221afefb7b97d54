"""daemon: job backend options, cancel flag, schedules, drift checks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 09:35:50.974345
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "autotune_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=True),
        sa.Column("minutes", sa.Double(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_run_at", sa.DateTime(), nullable=True),
        sa.Column("next_run_at", sa.DateTime(), nullable=False),
        sa.Column("last_job_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["autotune_hosts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "autotune_drift_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("previous_job_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("before_goodput_rps", sa.Double(), nullable=False),
        sa.Column("after_goodput_rps", sa.Double(), nullable=False),
        sa.Column("change", sa.Double(), nullable=True),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("causes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["autotune_jobs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["previous_job_id"],
            ["autotune_jobs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("autotune_drift_checks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_autotune_drift_checks_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_autotune_drift_checks_model"), ["model"], unique=False)

    with op.batch_alter_table("autotune_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("backend_options", sa.JSON(), server_default="{}", nullable=False))
        batch_op.add_column(sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("waiting_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("autotune_jobs", schema=None) as batch_op:
        batch_op.drop_column("waiting_reason")
        batch_op.drop_column("cancel_requested")
        batch_op.drop_column("backend_options")

    with op.batch_alter_table("autotune_drift_checks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_autotune_drift_checks_model"))
        batch_op.drop_index(batch_op.f("ix_autotune_drift_checks_job_id"))

    op.drop_table("autotune_drift_checks")
    op.drop_table("autotune_schedules")
