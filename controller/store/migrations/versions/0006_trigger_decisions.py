"""Trigger decisions: what admission made of every record-bound trigger, and of other drops and refusals.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trigger_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("account", sa.String(length=63), nullable=False),
        sa.Column("workflow_id", sa.Integer(), nullable=False),
        sa.Column("workflow_key", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("execution_id", sa.Integer(), nullable=True),
        sa.Column("record_type", sa.String(length=255), nullable=True),
        sa.Column("record_id", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["workflow_id"], ["workflows.id"],
                                name=op.f("fk_trigger_decisions_workflow_id_workflows"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trigger_decisions")),
    )
    with op.batch_alter_table("trigger_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trigger_decisions_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_trigger_decisions_account_record_type_record_id_id"),
                              ["account", "record_type", "record_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_trigger_decisions_workflow_id_id"), ["workflow_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_table("trigger_decisions")
