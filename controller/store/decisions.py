"""Trigger decisions in the store: written by admission, read as a record's timeline, purged by age.

A row says what admission made of one trigger of one workflow: ``started`` (with the execution),
``filtered`` (the trigger's ``when`` was false), ``dropped`` (over the rate limit) or ``refused``
(disabled, no valid version, suspended, ...), with the reason in words. Rows of record-bound
triggers carry the record's type and id; that is the timeline of
``wfctl records timeline TYPE:ID``. Every function runs in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from controller.errors import NotFoundError
from controller.store import records
from controller.store.tables import as_utc, trigger_decisions

d = trigger_decisions.c


def add(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert decisions; each row has the table's columns but ``id``."""
    if rows:
        conn.execute(insert(trigger_decisions), list(rows))


def timeline(conn: Connection, account: str, record_type: str, record_id: str, *,
             limit: int = 500) -> list[dict[str, Any]]:
    """The record's decisions, newest first, as ``{"at", "workflow", "version", "trigger", "decision",
    "reason", "execution_id"}``."""
    query = (select(d.at, d.workflow_key, d.version, d.trigger, d.decision, d.reason, d.execution_id)
             .where(d.account == account, d.record_type == record_type, d.record_id == record_id)
             .order_by(d.id.desc()).limit(limit))
    return [{"at": as_utc(at).isoformat(), "workflow": key, "version": version, "trigger": trigger,
             "decision": decision, "reason": reason, "execution_id": execution_id}
            for at, key, version, trigger, decision, reason, execution_id in conn.execute(query)]


def record_timeline(conn: Connection, account: str, record_type: str, record_id: str) -> list[dict[str, Any]]:
    """:func:`timeline`, or NotFoundError when nothing is known of the record at all.

    A record of the built-in store (even a deleted one) with no decisions has an empty timeline; a
    host's record is known by its decisions only.
    """
    found = timeline(conn, account, record_type, record_id)
    if not found and not records.ever_existed(conn, account, record_type, record_id):
        raise NotFoundError(f"no record {record_type}:{record_id} in account {account!r}, and no trigger decided "
                            f"on one; check the type and the id")
    return found


def purge(conn: Connection, before: datetime) -> int:
    """Forget decisions made before ``before``; returns how many."""
    return int(conn.execute(delete(trigger_decisions).where(d.at < before)).rowcount or 0)
