"""Trigger decisions in the store: written by admission, read as a record's timeline, purged by age.

A row says what admission made of one trigger of one workflow: ``started`` (with the execution),
``filtered`` (the trigger's ``when`` was false), ``dropped`` (over the rate limit) or ``refused``
(disabled, no valid version, suspended, ...), with the reason in words. Rows of record-bound
triggers carry the record's type and id; that is the timeline of
``wfctl records timeline TYPE:ID``. A filtered row keeps the trigger input too (``event``): with the
inputs of started executions, those are the recent events the impact preview replays
(:func:`recent_events`). Every function runs in the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from controller.errors import NotFoundError
from controller.store import records
from controller.store.tables import as_utc, executions, trigger_decisions

d = trigger_decisions.c
EVENT_MAX_BYTES = 64 * 1024
"""A filtered trigger's input larger than this (as JSON) is not kept: its decision is, without the event."""


def kept_event(trigger: Mapping[str, Any]) -> dict[str, Any] | None:
    """The trigger input to keep with a filtered decision, or None when it is too large to keep."""
    event = dict(trigger)
    return event if len(json.dumps(event, default=str)) <= EVENT_MAX_BYTES else None


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


@dataclass(frozen=True)
class Event:
    """One trigger admission decided on, as the impact preview replays it."""

    ref: str  # "execution 12" or "decision 34": where the controller keeps it
    at: datetime
    decision: str  # started | filtered: what the controller made of it
    trigger: dict[str, Any]
    record_ref: dict[str, Any] | None


def recent_events(conn: Connection, workflow_id: int, *, limit: int, since: datetime | None = None) -> list[Event]:
    """The workflow's last ``limit`` trigger events, newest first: the inputs of the executions it started
    (retries left out: they repeat an event) and of the triggers its ``when`` filtered."""
    e = executions.c
    started = select(e.id, e.created_at, e.trigger, e.record_ref).where(e.workflow_id == workflow_id,
                                                                        e.retry_of.is_(None))
    filtered = select(d.id, d.at, d.event, d.record_type, d.record_id).where(
        d.workflow_id == workflow_id, d.decision == "filtered", d.event.is_not(None))
    if since is not None:
        started, filtered = started.where(e.created_at >= since), filtered.where(d.at >= since)
    found = [Event(f"execution {i}", as_utc(at), "started", dict(trigger), dict(ref) if ref else None)
             for i, at, trigger, ref in conn.execute(started.order_by(e.id.desc()).limit(limit))]
    found += [Event(f"decision {i}", as_utc(at), "filtered", dict(event),
                    {"type": kind, "id": rid} if kind is not None else None)
              for i, at, event, kind, rid in conn.execute(filtered.order_by(d.id.desc()).limit(limit))]
    return sorted(found, key=lambda event: event.at, reverse=True)[:limit]
