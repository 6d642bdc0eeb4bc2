"""Rate limits: at most ``spec.rateLimit.max`` executions of a workflow per ``spec.rateLimit.per``.

A sliding window over the store: a workflow is over its limit when ``max`` of its executions were
created in the last ``per`` seconds, whatever started them. Webhook intake and retries ask before
they queue one (:func:`retry_after`, in the transaction that would queue it; on PostgreSQL a
per-workflow advisory lock makes concurrent askers take turns, SQLite serialises writers
anyway). A refused trigger is dropped and counted in ``rate_limit_drops``, which the workflow's
API view shows as ``dropped``. A workflow without ``rateLimit`` is not limited.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, select, text
from sqlalchemy.dialects import postgresql, sqlite

from controller.errors import RateLimited
from controller.model.durations import parse_duration
from controller.store.tables import executions, rate_limit_drops, workflow_versions, workflows

log = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x77667263  # "wfrc": pg_advisory_xact_lock(namespace, workflow id)
e = executions.c


@dataclass(frozen=True)
class RateLimit:
    max: int
    per: int  # seconds
    text: str  # as written: "30 per 1m"


def of(definition: Mapping[str, Any] | None) -> RateLimit | None:
    """The ``spec.rateLimit`` of a normalized definition, or None."""
    spec = (definition or {}).get("spec", {}).get("rateLimit")
    if not spec:
        return None
    return RateLimit(int(spec["max"]), parse_duration(spec["per"]), f"{spec['max']} per {spec['per']}")


def current(conn: Connection, workflow_id: int) -> RateLimit | None:
    """The rate limit of the workflow's current version."""
    w, v = workflows.c, workflow_versions.c
    content = conn.execute(
        select(v.content).join(workflows, and_(v.workflow_id == w.id, v.version == w.version)).where(w.id == workflow_id)
    ).scalar()
    return of(content)


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


def admit(conn: Connection, workflow_id: int, key: str, now: datetime) -> None:
    """RateLimited when the workflow's window is full (the caller then counts the drop)."""
    limit = current(conn, workflow_id)
    if limit is not None:
        wait = retry_after(conn, workflow_id, limit, now)
        if wait is not None:
            raise refusal(key, limit, wait)


def refusal(key: str, limit: RateLimit, wait: int) -> RateLimited:
    return RateLimited(f"{key} is over its rate limit ({limit.text}); the trigger was dropped; try again in "
                       f"{wait}s, or raise spec.rateLimit in git", workflow=key, retry_after=wait)


def count_drop(conn: Connection, workflow_id: int, key: str, now: datetime) -> int:
    """Count one dropped trigger of the workflow; returns how many it has dropped in all."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(rate_limit_drops).values(workflow_id=workflow_id, dropped=1, last_dropped_at=now)
    conn.execute(stmt.on_conflict_do_update(index_elements=["workflow_id"], set_={
        "dropped": rate_limit_drops.c.dropped + 1, "last_dropped_at": stmt.excluded.last_dropped_at}))
    total = int(conn.execute(select(rate_limit_drops.c.dropped)
                             .where(rate_limit_drops.c.workflow_id == workflow_id)).scalar_one())
    if math.log10(total).is_integer():  # 1, 10, 100, ...: visible in the log without flooding it
        log.warning("%s: over its rate limit, %d trigger(s) dropped so far", key, total)
    return total


def dropped(conn: Connection, workflow_id: int) -> dict[str, Any]:
    """``{"dropped": n, "last_dropped_at": datetime | None}`` for the workflow."""
    d = rate_limit_drops.c
    row = conn.execute(select(d.dropped, d.last_dropped_at).where(d.workflow_id == workflow_id)).first()
    return {"dropped": row.dropped if row else 0, "last_dropped_at": row.last_dropped_at if row else None}
