"""Retention: finished executions older than the configured period are forgotten.

Their figures live on in the metric buckets (folded in when each one finished), so pruning
changes no metric. Runs in the caller's transaction, a bounded batch at a time, from the serve
loop's purge pass.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, select, update

from controller.model.statuses import FINAL, ordered
from controller.store.tables import executions

e = executions.c


def prune_executions(conn: Connection, before: datetime, *, batch: int = 1000) -> int:
    """Delete up to ``batch`` executions that finished before ``before`` (their steps go with them)."""
    ids = list(conn.execute(select(e.id).where(e.status.in_(ordered(FINAL)), e.finished_at < before)
                            .order_by(e.id).limit(batch)).scalars())
    if not ids:
        return 0
    # A retry or a child keeps its own row; only its link to the forgotten one goes.
    conn.execute(update(executions).where(e.retry_of.in_(ids)).values(retry_of=None))
    conn.execute(update(executions).where(e.parent_id.in_(ids)).values(parent_id=None))
    return int(conn.execute(delete(executions).where(e.id.in_(ids))).rowcount or 0)
