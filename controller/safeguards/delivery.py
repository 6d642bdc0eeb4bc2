"""Sending alert notifications: e-mail through the system mailbox, Slack-compatible and JSON webhooks.

Where it sits: :mod:`controller.safeguards.alerts` writes one ``alert_deliveries`` row per sink in
the transaction that raised the alert; the serve loop's ``alerts`` pass calls :func:`deliver_due`,
which takes due rows under a short claim (so two processes do not send one twice), sends them
outside any transaction, and writes the outcome. A sink that fails is retried with a growing
back-off (30 s, doubling, at most an hour, 12 attempts); nothing here runs in an execution's path.
Webhook sinks are called through the outbound-call guard under the alert's account's policy, like
a workflow's own calls (:mod:`controller.outbound`).
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Connection, select, update

from controller.addresses import HOST_ADDRESS, address, header_text
from controller.config import Config
from controller.outbound import Clients
from controller.store import Store
from controller.store.tables import alert_deliveries

log = logging.getLogger(__name__)

CLAIM_SECONDS = 120  # a claimed row is not taken again for this long (the sender may have died)
MAX_ATTEMPTS = 12
TIMEOUT = 10.0
d = alert_deliveries.c

Sender = Callable[[Mapping[str, Any], Mapping[str, Any]], None]


def deliver_due(store: Store, config: Config, now: datetime, *, send: Sender | None = None, limit: int = 50,
                clients: Clients | None = None, fence: Callable[[Connection], object] | None = None) -> int:
    """Send the deliveries that are due; returns how many went out. ``clients``: the connection pools to send
    webhooks with (serve passes the engine's, so a pass does not open new connections); ``fence``: serve's
    leader check, in the transaction that claims them (a replica that lost the lease sends nothing)."""
    with store.tx() as conn:
        if fence is not None:
            fence(conn)
        due = [dict(row) for row in conn.execute(
            select(alert_deliveries).where(d.delivered_at.is_(None), d.next_at <= now, d.attempts < MAX_ATTEMPTS)
            .order_by(d.id).limit(limit)).mappings()]
        if due:
            conn.execute(update(alert_deliveries).where(d.id.in_([row["id"] for row in due]))
                         .values(next_at=now + timedelta(seconds=CLAIM_SECONDS)))
    if not due:
        return 0
    sender = send or Sinks(config, clients=clients).send
    sent = 0
    for row in due:
        try:
            sender(row["sink"], row["message"])
        except Exception as error:  # noqa: BLE001 - any sink failure is retried later; none stops the loop
            attempts = row["attempts"] + 1
            wait = min(3600, 30 * 2 ** (attempts - 1))
            reason = f"{type(error).__name__}: {error}"
            log.warning("alert delivery %s to %s failed (attempt %d): %s", row["id"], _where(row["sink"]), attempts,
                        reason)
            with store.tx() as conn:
                conn.execute(update(alert_deliveries).where(d.id == row["id"]).values(
                    attempts=attempts, error=reason[:2000], next_at=now + timedelta(seconds=wait)))
            continue
        with store.tx() as conn:
            conn.execute(update(alert_deliveries).where(d.id == row["id"]).values(
                attempts=row["attempts"] + 1, delivered_at=now, error=""))
        sent += 1
    return sent


class Sinks:
    """The real senders."""

    def __init__(self, config: Config, environ: Mapping[str, str] | None = None, *, clients: Clients | None = None):
        self.config = config
        self.environ = os.environ if environ is None else environ
        self.http = clients or Clients()

    def send(self, sink: Mapping[str, Any], message: Mapping[str, Any]) -> None:
        kind = sink.get("type")
        account = str((message.get("alert") or {}).get("account") or "")
        if kind == "email":
            self._mail(list(sink.get("to") or []), message)
        elif kind == "slack":
            self._post(account, str(sink["url"]), {"text": f"*{message['subject']}*\n{message['text']}"})
        elif kind == "webhook":
            self._post(account, str(sink["url"]), {"subject": message["subject"], "text": message["text"],
                                                   "alert": message["alert"]})
        else:
            raise ValueError(f"unknown sink type {kind!r}")

    def _post(self, account: str, url: str, payload: Mapping[str, Any]) -> None:
        answer = self.http(self.config.outbound(account)).request("POST", url, json=payload, timeout=TIMEOUT)
        if not 200 <= answer.status < 300:
            raise RuntimeError(f"{url.split('?')[0]} answered {answer.status}")

    def _mail(self, to: list[str], message: Mapping[str, Any]) -> None:
        smtp = self.config.smtp
        if not smtp:
            raise RuntimeError("no notifications.smtp is configured (the system mailbox)")
        mail = _alert_mail(self.config.mail_from, to, str(message["subject"]))
        mail.set_content(str(message["text"]))
        factory = smtplib.SMTP_SSL if smtp.get("ssl") else smtplib.SMTP
        with factory(smtp["host"], int(smtp.get("port") or 587), timeout=TIMEOUT) as client:
            if smtp.get("starttls") and not smtp.get("ssl"):
                client.starttls(context=ssl.create_default_context())
            if smtp.get("username"):
                password = self.environ.get(str(smtp.get("password_env") or ""), "")
                client.login(str(smtp["username"]), password)
            client.send_message(mail)


def _alert_mail(sender: str, to: list[str], subject: str) -> EmailMessage:
    """An alert's headers from parsed addresses (controller.addresses), as a workflow's e-mail gets them."""
    mail = EmailMessage()
    mail["From"] = address(sender, "notifications.mail_from", HOST_ADDRESS)
    mail["To"] = [address(item, "the alert sink's to") for item in to]
    # The subject is ours, but it quotes workflow names and errors: folded onto one line, never refused.
    mail["Subject"] = header_text(" ".join(subject.split()), "subject")
    return mail


def _where(sink: Mapping[str, Any]) -> str:
    if sink.get("type") == "email":
        return "e-mail to " + ", ".join(sink.get("to") or [])
    return f"{sink.get('type')} {str(sink.get('url', '')).split('?')[0]}"
