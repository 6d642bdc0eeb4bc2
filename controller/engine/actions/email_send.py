"""``email.send``: build the message from a shared mailbox and hand it to the effects.

Recipients (``to``, ``cc``, ``bcc``, and ``reply_to``) are e-mail addresses or ``user:<id>``
references (resolved to the user's address in the directory), parsed into
:class:`email.headerregistry.Address` objects by :mod:`controller.addresses`: headers are built from
parsed values, never pasted text. A string is one recipient, whether the definition wrote it or a
placeholder gave it (a record field ``"a@x.test, b@y.test"`` is one invalid address, not two);
several recipients are a list: a YAML list in the definition or a placeholder that gives a list. A
line break in any header value (subject, recipients, the mailbox's name) fails the step before
anything is sent, in a real run and in a dry run alike. The message carries
``Auto-Submitted: auto-generated`` (RFC 3834) so that auto-responders do not answer it and start a
loop with an inbound-mail workflow.
"""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from controller.addresses import address, header_text, named
from controller.engine.actions.base import ActionContext, Done, Outcome
from controller.errors import ExecutionError
from controller.model.entries import DirectoryEntry

COPIES = ("cc", "bcc", "reply_to")  # optional recipient fields besides ``to``
_HEADERS = {"to": "To", "cc": "Cc", "bcc": "Bcc", "reply_to": "Reply-To"}


def run(inputs: dict[str, Any], ctx: ActionContext) -> Outcome:
    """Send the e-mail; the output is what the effects report (message id, from, to, subject)."""
    mailbox = ctx.lookup(str(inputs["mailbox"]), "mailbox")
    to = recipients(inputs.get("to"), "to", ctx)
    if not to:
        raise ExecutionError("to: no recipients (give an address, user:<id> or a list of them)")
    copies = {field: recipients(inputs[field], field, ctx) for field in COPIES if inputs.get(field) is not None}
    message = build_message(mailbox, {"to": to, **copies}, inputs, ctx)
    return Done(ctx.effects.send_email(ctx.account, mailbox, message))


def recipients(value: Any, field: str, ctx: ActionContext) -> list[Address]:
    """The addresses ``value`` names: one recipient or a list, each an address or ``user:<id>``."""
    items = value if isinstance(value, list) else [value]
    found: list[Address] = []
    for item in items:
        if isinstance(item, list):  # a template gave a list inside the list
            found.extend(recipients(item, field, ctx))
        else:
            found.append(_recipient(item, field, ctx))
    return found


def _recipient(item: Any, field: str, ctx: ActionContext) -> Address:
    if not isinstance(item, str) or not item.strip():
        # Usually a template that gave nothing: {{ record.assignee.email }} of an unassigned record.
        raise ExecutionError(f"{field}: the recipient is empty ({item!r}); give an address or user:<id>")
    text = item.strip()
    if text.startswith("user:"):
        return _user_address(text, field, ctx)
    return address(text, field)


def _user_address(ref: str, field: str, ctx: ActionContext) -> Address:
    user = ctx.lookup(ref, "user")
    email = str(user.data.get("email") or "")
    if not email:
        raise ExecutionError(f"{field}: {ref} has no e-mail address in the directory; add one with "
                             f"`wfctl directory load`")
    return named(user.name, email, f"{field} ({ref})")


def build_message(mailbox: DirectoryEntry, recipients: dict[str, list[Address]], inputs: dict[str, Any],
                  ctx: ActionContext) -> EmailMessage:
    """The message as it will be sent: headers from the mailbox and the context, the body as given.

    ``recipients`` maps ``to``, ``cc``, ``bcc`` and ``reply_to`` to their parsed addresses.
    """
    sender = str(mailbox.data.get("address") or "")
    try:
        origin = named(mailbox.name, sender, f"from ({mailbox.ref})")
    except ExecutionError as error:
        raise ExecutionError(f"{mailbox.ref} has no valid sending address ({error}); set its name and address "
                             f"in the directory") from None
    message = EmailMessage()
    message["From"] = origin
    for field, found in recipients.items():
        if found:
            message[_HEADERS[field]] = found
    message["Subject"] = header_text(inputs.get("subject"), "subject")
    message["Date"] = format_datetime(ctx.now)
    # The same for every attempt of the step: a receiver (and the outbox) can tell a repeat.
    domain = origin.domain
    message["Message-ID"] = f"<{ctx.idempotency_key}@{domain}>" if ctx.idempotency_key else make_msgid(domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Wfctl-Workflow"] = ctx.workflow
    body = "" if inputs.get("body") is None else str(inputs["body"])
    message.set_content(body, subtype="html" if inputs.get("html") else "plain")
    return message
