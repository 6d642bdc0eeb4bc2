"""``email``: a message arrived in a shared mailbox.

``trigger``: ``{"type": "email", "mailbox", "from", "to", "cc", "subject", "message_id", "date",
"text", "html"}``; the execution is about no record.
"""

from __future__ import annotations

from collections.abc import Mapping
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from controller.engine.admission import Request
from controller.engine.triggers.base import Given
from controller.engine.triggers.listeners import listeners
from controller.errors import UsageError

if TYPE_CHECKING:
    from controller.engine.runtime import Engine

TYPE = "email"
FIELDS = ("from", "to", "cc", "subject", "message_id", "date", "text", "html")


def payload(mailbox: str, message: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": TYPE, "mailbox": mailbox, **{name: "" for name in FIELDS}, **message}


def record_ref(trigger: Mapping[str, Any]) -> dict[str, str] | None:
    return None


def sample(spec: Mapping[str, Any], given: Given) -> dict[str, Any]:
    return payload(spec["mailbox"], {"message_id": "<dry-run@dry-run.invalid>", **(given.email or {})})


def listens(spec: Mapping[str, Any], trigger: Mapping[str, Any]) -> bool:
    """Whether an e-mail workflow of trigger ``spec`` listens on the mailbox the message came to."""
    return bool(spec["mailbox"] == trigger.get("mailbox"))


def deliver(engine: Engine, conn: Connection, account: str, mailbox: str, raw: bytes) -> list[int]:
    """Hand an inbound message for a shared mailbox to the ``email`` workflows listening on it."""
    if not mailbox.startswith("mailbox:"):
        raise UsageError(f"{mailbox!r} is not a mailbox reference (use mailbox:<id>)")
    trigger = payload(mailbox, parse_mail(raw))
    started = []
    for listener in listeners(conn, TYPE, account, enabled_only=False):
        if not listens(listener.trigger, trigger):
            continue
        verdict = engine.admission.admit(conn, Request(listener.key, TYPE, trigger), listener.target,
                                         listener.definition)
        if verdict.execution_id is not None:
            started.append(verdict.execution_id)
    return started


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
