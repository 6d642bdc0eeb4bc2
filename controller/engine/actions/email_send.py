"""``email.send``: build the message from a shared mailbox and hand it to the effects.

Recipients are e-mail addresses or ``user:<id>`` references (resolved to the user's address in the
directory); a template may give one recipient or a list. The message carries
``Auto-Submitted: auto-generated`` (RFC 3834) so that auto-responders do not answer it and start a
loop with an inbound-mail workflow.
"""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses, make_msgid
from typing import Any

from controller.engine.actions.base import ActionContext, Done, Outcome
from controller.errors import ExecutionError
from controller.model.entries import DirectoryEntry

_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+\.[^@\s<>(),;:\"\[\]]+$")


def run(inputs: dict[str, Any], ctx: ActionContext) -> Outcome:
    """Send the e-mail; the output is what the effects report (message id, from, to, subject)."""
    mailbox = ctx.lookup(str(inputs["mailbox"]), "mailbox")
    to = recipients(inputs.get("to"), "to", ctx)
    if not to:
        raise ExecutionError("to: no recipients (give an address, user:<id> or a list of them)")
    cc = recipients(inputs.get("cc"), "cc", ctx) if inputs.get("cc") is not None else []
    message = build_message(mailbox, to, cc, inputs, ctx)
    return Done(ctx.effects.send_email(ctx.account, mailbox, message))


def recipients(value: Any, field: str, ctx: ActionContext) -> list[str]:
    """The addresses ``value`` names: one recipient or a list, each an address or ``user:<id>``."""
    items = value if isinstance(value, list) else [value]
    found: list[str] = []
    for item in items:
        found.extend(_addresses(item, field, ctx))
    return found


def _addresses(item: Any, field: str, ctx: ActionContext) -> list[str]:
    if isinstance(item, list):  # a template gave a list inside the list
        return recipients(item, field, ctx)
    if not isinstance(item, str) or not item.strip():
        # Usually a template that gave nothing: {{ record.assignee.email }} of an unassigned record.
        raise ExecutionError(f"{field}: the recipient is empty ({item!r}); give an address or user:<id>")
    text = item.strip()
    if text.startswith("user:"):
        return [_user_address(text, field, ctx)]
    # "Alice <a@x.test>, b@x.test" is two recipients; keep each with its display name.
    pairs = getaddresses([text])
    for _, address in pairs:
        _check_address(address, text, field)
    return [formataddr(pair) for pair in pairs]


def _user_address(ref: str, field: str, ctx: ActionContext) -> str:
    user = ctx.lookup(ref, "user")
    address = str(user.data.get("email") or "")
    if not address:
        raise ExecutionError(f"{field}: {ref} has no e-mail address in the directory; add one with "
                             f"`wfctl directory load`")
    _check_address(address, ref, field)
    return formataddr((user.name, address))


def _check_address(address: str, source: str, field: str) -> None:
    if not _ADDRESS.match(address):
        raise ExecutionError(f"{field}: {source!r} is not an e-mail address (use name@domain or user:<id>)")


def build_message(mailbox: DirectoryEntry, to: list[str], cc: list[str], inputs: dict[str, Any],
                  ctx: ActionContext) -> EmailMessage:
    """The message as it will be sent: headers from the mailbox and the context, the body as given."""
    sender = str(mailbox.data.get("address") or "")
    if not _ADDRESS.match(sender):
        raise ExecutionError(f"{mailbox.ref} has no valid sending address ({sender!r}); set its address "
                             f"in the directory")
    message = EmailMessage()
    message["From"] = formataddr((mailbox.name, sender))
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = _one_line(inputs.get("subject"))
    message["Date"] = format_datetime(ctx.now)
    domain = Address(addr_spec=sender).domain
    # The same for every attempt of the step: a receiver (and the outbox) can tell a repeat.
    message["Message-ID"] = f"<{ctx.idempotency_key}@{domain}>" if ctx.idempotency_key else make_msgid(domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Wfctl-Workflow"] = ctx.workflow
    body = "" if inputs.get("body") is None else str(inputs["body"])
    message.set_content(body, subtype="html" if inputs.get("html") else "plain")
    return message


def _one_line(value: Any) -> str:
    # A header cannot hold a line break, and a record title used as a subject may have one.
    return " ".join(("" if value is None else str(value)).split())
