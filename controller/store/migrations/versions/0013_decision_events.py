"""Impact preview: a filtered trigger decision keeps the trigger input it decided on, to be replayed.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("trigger_decisions") as batch:
        batch.add_column(sa.Column("event", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()),
                                                                   "postgresql"), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trigger_decisions") as batch:
        batch.drop_column("event")
