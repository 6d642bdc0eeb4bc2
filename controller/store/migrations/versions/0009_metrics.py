"""Metrics: failure classes and waiting time on executions, and the rollup buckets.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HISTOGRAM = [f"h{i:02d}" for i in range(21)]  # DURATION_BOUNDS has 20 bounds, plus +Inf


def _key(table: str) -> list[Any]:
    return [sa.Column("workflow_id", sa.Integer(), nullable=False),
            sa.Column("span", sa.String(length=1), nullable=False),
            sa.Column("start", sa.DateTime(timezone=True), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("account", sa.String(length=63), nullable=False),
            sa.ForeignKeyConstraint(["workflow_id"], ["workflows.id"], ondelete="CASCADE",
                                    name=op.f(f"fk_{table}_workflow_id_workflows"))]


def upgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failure", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("waited_seconds", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("execution_steps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failure", sa.String(length=16), nullable=True))
    key = ["workflow_id", "span", "start", "version"]
    op.create_table(
        "metric_buckets",
        *_key("metric_buckets"),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in ("executions", "succeeded", "failed", "terminated")),
        *(sa.Column(name, sa.Float(), nullable=False)
          for name in ("duration_sum", "duration_max", "active_sum", "active_max", "wait_sum")),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in HISTOGRAM),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in ("dropped", "refused", "filtered")),
        sa.PrimaryKeyConstraint("account", "span", "start", "workflow_id", "version", name=op.f("pk_metric_buckets")),
        sqlite_with_rowid=False,
    )
    op.create_index(op.f("ix_metric_buckets_workflow_id_span_start"), "metric_buckets", ["workflow_id", "span", "start"])
    op.create_table(
        "metric_failures",
        *_key("metric_failures"),
        sa.Column("failure", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(*key, "failure", name=op.f("pk_metric_failures")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "metric_actions",
        *_key("metric_actions"),
        sa.Column("action_id", sa.String(length=63), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("duration_sum", sa.Float(), nullable=False),
        sa.Column("duration_max", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(*key, "action_id", name=op.f("pk_metric_actions")),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("metric_actions")
    op.drop_table("metric_failures")
    op.drop_index(op.f("ix_metric_buckets_workflow_id_span_start"), table_name="metric_buckets")
    op.drop_table("metric_buckets")
    with op.batch_alter_table("execution_steps", schema=None) as batch_op:
        batch_op.drop_column("failure")
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_column("waiting_since")
        batch_op.drop_column("waited_seconds")
        batch_op.drop_column("failure")
