"""``record``: a record of one entity type was created, updated or deleted.

``trigger``: ``{"type": "record", "event", "entity", "record"}``; the execution is about the record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from controller.engine.admission import Request
from controller.engine.triggers.base import Given, record_ref_of
from controller.engine.triggers.listeners import listeners

if TYPE_CHECKING:
    from controller.engine.runtime import Engine

TYPE = "record"
log = logging.getLogger(__name__)


def payload(event: str, entity: str, record: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"type": TYPE, "event": event, "entity": entity, "record": record}


def record_ref(trigger: Mapping[str, Any]) -> dict[str, str] | None:
    return record_ref_of(trigger["entity"], trigger.get("record"))


def sample(spec: Mapping[str, Any], given: Given) -> dict[str, Any]:
    return payload(spec["events"][0], spec["entity"], given.record)


def listens(spec: Mapping[str, Any], trigger: Mapping[str, Any]) -> bool:
    """Whether a record workflow of trigger ``spec`` listens for this event on this entity type."""
    return bool(spec["entity"] == trigger.get("entity") and trigger.get("event") in spec["events"])


def fire(engine: Engine, conn: Connection, account: str, entity: str, event: str, record: dict[str, Any],
         *, depth: int = 0) -> list[int]:
    """Ask admission to start the account's ``record`` workflows that listen for this event on this entity."""
    if depth > engine.max_depth:
        log.warning("record %s:%s %s by a chain %d executions deep: not triggering again", entity,
                    record.get("id"), event, depth)
        return []
    trigger = payload(event, entity, record)
    started = []
    for listener in listeners(conn, TYPE, account, enabled_only=False):
        if not listens(listener.trigger, trigger):
            continue
        verdict = engine.admission.admit(conn, Request(listener.key, TYPE, trigger, record_ref(trigger), depth=depth),
                                         listener.target, listener.definition)
        if verdict.execution_id is not None:
            started.append(verdict.execution_id)
    return started
