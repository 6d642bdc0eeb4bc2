"""Indexes for what every sync asks of the workflows: the ones not Synced, the blocked ones, the webhook ones.

Without them each of those questions scanned every workflow row (~3–5 ms each at 10,000 workflows, four
per one-file sync).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    not_synced = sa.text("sync != 'Synced'")
    blocked = sa.text("blocked_commit IS NOT NULL")
    op.create_index("ix_workflows_not_synced", "workflows", ["key"], sqlite_where=not_synced,
                    postgresql_where=not_synced)
    op.create_index("ix_workflows_blocked", "workflows", ["key"], sqlite_where=blocked, postgresql_where=blocked)
    op.create_index("ix_workflows_trigger_type_key", "workflows", ["trigger_type", "key"])


def downgrade() -> None:
    op.drop_index("ix_workflows_trigger_type_key", "workflows")
    op.drop_index("ix_workflows_blocked", "workflows")
    op.drop_index("ix_workflows_not_synced", "workflows")
