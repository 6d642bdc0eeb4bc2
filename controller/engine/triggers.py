"""Triggers: turn events into queued executions of the workflows that listen for them.

``record`` (a record created, updated or deleted, filtered by ``when``), ``inactivity`` (records
quiet for ``after``: once per quiet spell), ``email`` (inbound mail to a shared mailbox),
``schedule`` (fired by :mod:`controller.engine.scheduler`), ``manual`` and ``webhook`` (started
on request). Every function takes the caller's connection, so an event and the executions it
starts commit together: no trigger is lost between the two.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, select

from controller.engine import queue
from controller.engine.templating import truthy
from controller.errors import TemplateError, UsageError
from controller.model import parse_duration
from controller.store import records as record_store
from controller.store.tables import workflow_versions, workflows

if TYPE_CHECKING:
    from controller.engine.runtime import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listener:
    """An active, enabled workflow and its trigger definition."""

    id: int
    key: str
    version: int
    trigger: dict[str, Any]

    @property
    def account(self) -> str:
        return self.key.split("/", 1)[0]


def listeners(conn: Connection, trigger_type: str, account: str | None = None) -> Iterator[Listener]:
    w, v = workflows.c, workflow_versions.c
    query = (
        select(w.id, w.key, w.version, v.content)
        .join(workflow_versions, and_(v.workflow_id == w.id, v.version == w.version))
        .where(w.trigger_type == trigger_type, w.deleted.is_(False), w.enabled.is_(True), w.content_hash.is_not(None))
        .order_by(w.key)
    )
    if account is not None:
        query = query.where(w.account == account)
    for workflow_id, key, version, content in conn.execute(query):
        yield Listener(workflow_id, key, version, content["spec"]["trigger"])


def record_event(engine: Engine, conn: Connection, account: str, entity: str, event: str, record: dict[str, Any],
                 *, depth: int = 0) -> list[int]:
    """Start the ``record`` workflows of the account that listen for this event on this entity."""
    if depth > engine.max_depth:
        log.warning("record %s:%s %s by a chain %d executions deep: not triggering again", entity,
                    record.get("id"), event, depth)
        return []
    trigger = {"type": "record", "event": event, "entity": entity, "record": record}
    rows = []
    for listener in listeners(conn, "record", account):
        spec = listener.trigger
        if spec["entity"] != entity or event not in spec["events"]:
            continue
        if _when(engine, listener, spec, {"record": record, "trigger": trigger}):
            rows.append(_row(listener, trigger, {"type": entity, "id": str(record["id"])}, depth))
    return queue.enqueue(conn, rows, engine.clock.now())


def inactivity_scan(engine: Engine, conn: Connection) -> list[int]:
    """Start inactivity workflows for records quiet longer than ``after``, once per quiet spell."""
    now = engine.clock.now()
    rows = []
    for listener in listeners(conn, "inactivity"):
        spec = listener.trigger
        quiet_since = now - timedelta(seconds=parse_duration(spec["after"]))
        for record in record_store.quiet_records(conn, listener.account, spec["entity"], quiet_since, listener.id):
            record_store.mark_fired(conn, listener.id, int(record["id"]), record["last_activity_at"])
            trigger = {"type": "inactivity", "entity": spec["entity"], "after": spec["after"], "record": record}
            if _when(engine, listener, spec, {"record": record, "trigger": trigger}):
                rows.append(_row(listener, trigger, {"type": spec["entity"], "id": str(record["id"])}, 0))
    return queue.enqueue(conn, rows, now)


def deliver_mail(engine: Engine, conn: Connection, account: str, mailbox: str, raw: bytes) -> list[int]:
    """Hand an inbound message for a shared mailbox to the ``email`` workflows listening on it."""
    if not mailbox.startswith("mailbox:"):
        raise UsageError(f"{mailbox!r} is not a mailbox reference (use mailbox:<id>)")
    trigger = {"type": "email", "mailbox": mailbox, **parse_mail(raw)}
    rows = [
        _row(listener, trigger, None, 0)
        for listener in listeners(conn, "email", account)
        if listener.trigger["mailbox"] == mailbox and _when(engine, listener, listener.trigger, {"trigger": trigger})
    ]
    return queue.enqueue(conn, rows, engine.clock.now())


def parse_mail(raw: bytes) -> dict[str, Any]:
    """The fields of a message that workflows read as ``trigger.*``."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    if not isinstance(message, EmailMessage) or not (message["From"] or message["Subject"]):
        raise UsageError("the file is not an e-mail message (no From or Subject header)")
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return {
        "from": str(message["From"] or ""),
        "to": str(message["To"] or ""),
        "cc": str(message["Cc"] or ""),
        "subject": str(message["Subject"] or ""),
        "message_id": str(message["Message-ID"] or ""),
        "date": str(message["Date"] or ""),
        "text": text.get_content() if text is not None else "",
        "html": html.get_content() if html is not None else "",
    }


def _when(engine: Engine, listener: Listener, spec: dict[str, Any], scope: dict[str, Any]) -> bool:
    condition = spec.get("when")
    if not condition:
        return True
    full = {"record": None, "trigger": {}, "vars": {}, "steps": {}, "account": listener.account,
            "workflow": {"id": listener.key, "name": listener.key.split("/", 1)[1], "account": listener.account,
                         "version": listener.version},
            "now": engine.clock.now().isoformat(), **scope}
    try:
        value = engine.templates.evaluate(condition, full)
    except TemplateError as e:
        log.warning("%s: trigger condition not evaluated, not started: %s", listener.key, e)
        return False
    return truthy(value)


def _row(listener: Listener, trigger: dict[str, Any], record_ref: dict[str, Any] | None, depth: int) -> dict[str, Any]:
    return {"workflow_id": listener.id, "workflow_key": listener.key, "trigger": trigger, "record_ref": record_ref,
            "depth": depth}
