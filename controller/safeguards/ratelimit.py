"""Rate limits: at most ``spec.rateLimit.max`` executions of a workflow per ``spec.rateLimit.per``.

A sliding window over the store, so the budget holds across processes: a workflow is over its
limit when ``max`` of its executions were created in the last ``per`` seconds, whatever started
them. Admission (:mod:`controller.engine.admission`) asks :func:`retry_after` for every trigger
kind, in the transaction that would queue the execution; on PostgreSQL a per-workflow advisory
lock makes concurrent askers take turns, SQLite serialises writers anyway. A dropped trigger is
counted in ``rate_limit_drops``, which the workflow's API view shows as ``dropped``. The limit is
the workflow's ``spec.rateLimit``, else the account default of the configuration; without
either a workflow is not limited.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, text
from sqlalchemy.dialects import postgresql, sqlite

from controller.model.durations import parse_duration
from controller.store.tables import executions, rate_limit_drops

LOCK_NAMESPACE = 0x77667263  # "wfrc": pg_advisory_xact_lock(namespace, workflow id)
e = executions.c


@dataclass(frozen=True)
class RateLimit:
    max: int
    per: int  # seconds
    text: str  # as written: "30 per 1m"


def of(definition: Mapping[str, Any] | None, default: Mapping[str, Any] | None = None) -> RateLimit | None:
    """The ``spec.rateLimit`` of a normalized definition, else ``default`` (the account's), or None."""
    spec = (definition or {}).get("spec", {}).get("rateLimit") or default
    if not spec:
        return None
    return RateLimit(int(spec["max"]), parse_duration(spec["per"]), f"{spec['max']} per {spec['per']}")


def retry_after(conn: Connection, workflow_id: int, limit: RateLimit, now: datetime) -> int | None:
    """None when one more execution fits in the window now, else the seconds until one does."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:ns, :id)"), {"ns": LOCK_NAMESPACE, "id": workflow_id})
    # The limit-th newest execution in the window: while it is in, the window is full.
    nth = conn.execute(
        select(e.created_at).where(e.workflow_id == workflow_id, e.created_at > now - timedelta(seconds=limit.per))
        .order_by(e.created_at.desc()).limit(1).offset(limit.max - 1)
    ).scalar()
    if nth is None:
        return None
    return max(1, math.ceil((nth + timedelta(seconds=limit.per) - now).total_seconds()))


def count_drop(conn: Connection, workflow_id: int, now: datetime) -> int:
    """Count one dropped trigger of the workflow; returns how many it has dropped in all."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(rate_limit_drops).values(workflow_id=workflow_id, dropped=1, last_dropped_at=now)
    conn.execute(stmt.on_conflict_do_update(index_elements=["workflow_id"], set_={
        "dropped": rate_limit_drops.c.dropped + 1, "last_dropped_at": stmt.excluded.last_dropped_at}))
    return int(conn.execute(select(rate_limit_drops.c.dropped)
                            .where(rate_limit_drops.c.workflow_id == workflow_id)).scalar_one())


def dropped(conn: Connection, workflow_id: int) -> dict[str, Any]:
    """``{"dropped": n, "last_dropped_at": datetime | None}`` for the workflow."""
    d = rate_limit_drops.c
    row = conn.execute(select(d.dropped, d.last_dropped_at).where(d.workflow_id == workflow_id)).first()
    return {"dropped": row.dropped if row else 0, "last_dropped_at": row.last_dropped_at if row else None}
