"""Loop health in the store: each serving process reports its loops; any process reads them.

A report older than :data:`FRESH_SECONDS` is from a process that stopped reporting (stopped or
killed) and is not counted; reports older than a day are forgotten.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from controller.store.tables import as_utc, controller_loops

FRESH_SECONDS = 120
c = controller_loops.c


def report(conn: Connection, owner: str, loops: Iterable[Mapping[str, Any]], now: datetime) -> None:
    """Replace this process's report with ``loops`` (rows of the table's columns but owner/updated_at)."""
    conn.execute(delete(controller_loops).where(c.owner == owner))
    conn.execute(delete(controller_loops).where(c.updated_at < now - timedelta(days=1)))
    rows = [{**row, "owner": owner, "updated_at": now} for row in loops]
    if rows:
        conn.execute(insert(controller_loops), rows)


def recent(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    """The loops reported in the last FRESH_SECONDS, each with ``status``: ok, failing or stalled.

    A loop is stalled when it has been failing for longer than its interval.
    """
    query = (select(controller_loops).where(c.updated_at >= now - timedelta(seconds=FRESH_SECONDS))
             .order_by(c.owner, c.name))
    found = []
    for row in conn.execute(query).mappings():
        since = as_utc(row["failing_since"]) if row["failing_since"] else None
        status = "ok" if since is None else (
            "stalled" if (now - since).total_seconds() > row["interval_seconds"] else "failing")
        found.append({"owner": row["owner"], "name": row["name"], "status": status, "failures": row["failures"],
                      "failing_since": since.isoformat() if since else None, "error": row["error"],
                      "last_ok_at": as_utc(row["last_ok_at"]).isoformat() if row["last_ok_at"] else None,
                      "interval_seconds": row["interval_seconds"]})
    return found
