"""initial schema: hosts, models, jobs, trials, pareto snapshots

Revision ID: 0001
Revises:
Create Date: 2026-11-25 08:57:10.556071
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "autotune_hosts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint"),
    )
    op.create_table(
        "autotune_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.JSON(), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("path", "content_hash"),
    )
    with op.batch_alter_table("autotune_models", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_autotune_models_name"), ["name"], unique=False)

    op.create_table(
        "autotune_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.Integer(), nullable=False),
        sa.Column("study_name", sa.String(length=300), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("study", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("backend", sa.String(length=40), nullable=False),
        sa.Column("trials_total", sa.Integer(), nullable=False),
        sa.Column("minutes", sa.Double(), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["autotune_hosts.id"],
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["autotune_models.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_name"),
    )
    with op.batch_alter_table("autotune_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_autotune_jobs_state", ["state"], unique=False)

    op.create_table(
        "autotune_pareto_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("entries", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["autotune_jobs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("autotune_pareto_snapshots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_autotune_pareto_snapshots_job_id"), ["job_id"], unique=False)

    op.create_table(
        "autotune_trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("objective_values", sa.JSON(), nullable=True),
        sa.Column("constraints", sa.JSON(), nullable=True),
        sa.Column("feasible", sa.Boolean(), nullable=False),
        sa.Column("levels", sa.JSON(), nullable=False),
        sa.Column("argv", sa.JSON(), nullable=False),
        sa.Column("server_pid", sa.Integer(), nullable=True),
        sa.Column("failure_reason", sa.String(length=40), nullable=True),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("server_log_tail", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["autotune_jobs.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "number"),
    )
    with op.batch_alter_table("autotune_trials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_autotune_trials_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("autotune_trials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_autotune_trials_job_id"))

    op.drop_table("autotune_trials")
    with op.batch_alter_table("autotune_pareto_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_autotune_pareto_snapshots_job_id"))

    op.drop_table("autotune_pareto_snapshots")
    with op.batch_alter_table("autotune_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_autotune_jobs_state")

    op.drop_table("autotune_jobs")
    with op.batch_alter_table("autotune_models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_autotune_models_name"))

    op.drop_table("autotune_models")
    op.drop_table("autotune_hosts")
