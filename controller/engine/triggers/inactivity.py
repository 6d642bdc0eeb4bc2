"""``inactivity``: a record has been quiet for ``after``; fires once per quiet spell.

``trigger``: ``{"type": "inactivity", "entity", "after", "record"}``; the execution is about the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from controller.engine.admission import Request
from controller.engine.triggers.base import Given, record_ref_of
from controller.engine.triggers.listeners import listeners
from controller.model import parse_duration
from controller.store import records as record_store

if TYPE_CHECKING:
    from controller.engine.runtime import Engine

TYPE = "inactivity"


def payload(entity: str, after: str, record: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"type": TYPE, "entity": entity, "after": after, "record": record}


def record_ref(trigger: Mapping[str, Any]) -> dict[str, str] | None:
    return record_ref_of(trigger["entity"], trigger.get("record"))


def sample(spec: Mapping[str, Any], given: Given) -> dict[str, Any]:
    return payload(spec["entity"], spec["after"], given.record)


def listens(spec: Mapping[str, Any], trigger: Mapping[str, Any]) -> bool:
    """Whether an inactivity workflow of trigger ``spec`` watches records of this type (the scan asks it by type)."""
    return bool(spec["entity"] == trigger.get("entity"))


def scan(engine: Engine, conn: Connection) -> list[int]:
    """Ask admission to start inactivity workflows for records quiet longer than ``after``."""
    now = engine.clock.now()
    started = []
    for listener in listeners(conn, TYPE):
        spec = listener.trigger
        quiet_since = now - timedelta(seconds=parse_duration(spec["after"]))
        for record in record_store.quiet_records(conn, listener.account, spec["entity"], quiet_since,
                                                 listener.target.id):
            # Marked whatever admission decides: a quiet spell is judged once, not again every scan.
            record_store.mark_fired(conn, listener.target.id, int(record["id"]), record["last_activity_at"])
            trigger = payload(spec["entity"], spec["after"], record)
            verdict = engine.admission.admit(conn, Request(listener.key, TYPE, trigger, record_ref(trigger)),
                                             listener.target, listener.definition)
            if verdict.execution_id is not None:
                started.append(verdict.execution_id)
    return started
