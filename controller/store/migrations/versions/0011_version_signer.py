"""Commit verification: the signer of a version's commit (principal and key fingerprint), when verified.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workflow_versions") as batch:
        batch.add_column(sa.Column("signer", sa.Text(), nullable=True))
        batch.add_column(sa.Column("signing_key", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workflow_versions") as batch:
        batch.drop_column("signing_key")
        batch.drop_column("signer")
