"""Step attempts: the idempotency key of a step's external effect, and the log of attempts that did not finish.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("execution_steps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("attempt_log", sa.JSON().with_variant(
            postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("execution_steps", schema=None) as batch_op:
        batch_op.drop_column("attempt_log")
        batch_op.drop_column("idempotency_key")
