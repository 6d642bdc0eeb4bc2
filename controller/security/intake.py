"""A signed webhook becomes a queued execution: ``POST /hooks/<account>/<name>`` without HTTP.

One transaction reads the workflow and its secret (under a shared row lock on PostgreSQL, so a
concurrent rotation waits for it), checks timestamp and signature, parses the body and hands the
execution to admission (with the workflow row read here, so admission reads it no second time),
like every other trigger; deliveries arriving together share that transaction (group commit, see
:mod:`controller.store.group`). Anything refused writes nothing, except what admission keeps (a
rate-limit drop counted, a refusal noted) and a workflow's first secret when it had none yet (the
request is refused with 401). The checks run in the order the answers are documented: unknown or
not a webhook workflow (404), bad, missing or stale signature (401), malformed JSON (400), no
valid version or disabled (409), over the rate limit (429), a replayed delivery (401).

What needs no store is done before the delivery joins a group (the timestamp, the JSON, the
signature under the secret last read for the workflow), so that the shared transaction, which holds
the store's write lock, runs little Python: the checks' outcomes are reported there in their order,
and a signature checked under a secret since rotated is checked again. Its two statements of every
delivery (the workflow row, the delivery remembered) run through :mod:`controller.store.direct`
(compiled once, on the driver's cursor): SQLAlchemy's execution context cost more per call than
SQLite did.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, delete, null, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from controller.engine.admission import TARGET_COLUMNS, Request, Target
from controller.engine.clock import Clock
from controller.engine.triggers import webhook
from controller.errors import AuthError, NotFoundError, PayloadError, WfcError
from controller.security import secrets
from controller.security.payloads import parse_json
from controller.security.signing import (
    STANDARD_ID_HEADER,
    STANDARD_TIMESTAMP_HEADER,
    TIMESTAMP_HEADER,
    TOLERANCE_SECONDS,
    check_signature,
    check_standard_signature,
    check_timestamp,
)
from controller.store import direct
from controller.store.group import GroupCommit
from controller.store.tables import webhook_deliveries, webhook_secrets, workflows

if TYPE_CHECKING:
    from controller.engine.runtime import Engine

w, s = workflows.c, webhook_secrets.c
_COLUMNS = (*TARGET_COLUMNS, w.trigger_type)
_WITH_SECRET = (select(*_COLUMNS, s.ciphertext).join(webhook_secrets, s.workflow_id == w.id)
                .where(w.key == bindparam("key"), w.deleted.is_(False)).with_for_update(read=True, of=webhook_secrets))
_REMEMBER = {name: dialect_insert(webhook_deliveries).on_conflict_do_nothing()
             for name, dialect_insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))}
_WORKFLOW = select(*_COLUMNS, null().label("ciphertext")).where(w.key == bindparam("key"), w.deleted.is_(False))
# Deliveries older than twice the timestamp window are forgotten this often: at 1,000 deliveries/s a purge
# every minute deleted 60,000 rows at once, ~0.2 s under the store's write lock; every second, ~4 ms.
PURGE_EVERY = timedelta(seconds=1)


class WebhookIntake:
    """Receives signed webhooks for one engine."""

    def __init__(self, engine: Engine, box: secrets.SecretBox, *, clock: Clock | None = None):
        self.engine = engine
        self.box = box
        self.clock = clock or engine.clock
        self.group = GroupCommit(engine.store)
        self._purged = datetime.min.replace(tzinfo=UTC)  # when old deliveries were last forgotten
        self._secrets: dict[str, tuple[str, str]] = {}  # key -> (ciphertext, secret) as last read in a transaction

    def receive(self, key: str, *, timestamp: str | None, signature: str | None, body: bytes,
                message_id: str | None = None, standard: bool = False) -> int:
        """Queue an execution of webhook workflow ``key`` with the JSON ``body``; returns its id.

        ``standard``: the request is signed the Standard Webhooks way (``message_id`` is its
        ``webhook-id``), else the ``X-Wfc-*`` way (see :mod:`controller.security.signing`).
        Concurrent deliveries share a transaction (:class:`~controller.store.group.GroupCommit`); each
        answer still waits for its own rows to be committed.
        """
        signed = Signed(timestamp, signature, message_id if standard else None, standard)
        early = self._early(key, signed, body, self.clock.now())
        outcome = self.group.run(lambda conn: self._receive(conn, key, signed, body, early))
        if isinstance(outcome, WfcError):  # refused, with the decision (a counted drop) committed
            raise outcome
        return outcome

    def _early(self, key: str, signed: Signed, body: bytes, now: datetime) -> _Early:
        """The checks that need no store, before the write lock; their outcomes wait for their turn."""
        stale = _failure(signed.check_timestamp, now)
        try:
            payload, bad = parse_json(body), None
        except PayloadError as e:
            payload, bad = None, e
        known = self._secrets.get(key)
        # A bad timestamp is the answer whatever the signature (and a signature over it could not be computed).
        checked = (None if known is None or stale is not None
                   else (known[0], _failure(signed.check_signature, known[1], body)))
        return _Early(now, stale, checked, webhook.payload(payload), bad)

    def _receive(self, conn: Connection, key: str, signed: Signed, body: bytes, early: _Early) -> int | WfcError:
        # One query on the common path; the secret row stays share-locked (PostgreSQL) until commit.
        row = direct.first(conn, _WITH_SECRET, {"key": key}) or direct.first(conn, _WORKFLOW, {"key": key})
        if row is None:
            raise NotFoundError(f"no workflow {key!r}; check the URL (/hooks/<account>/<name>) and `wfctl status`",
                                workflow=key)
        if row.trigger_type != "webhook":
            raise NotFoundError(f"{key} is not a webhook workflow (its trigger is "
                                f"{row.trigger_type or 'not valid yet'}); nothing was queued", workflow=key)
        if row.ciphertext is None:  # never ensured (not wired after reconcile): make one, refuse this request
            secrets.ensure_secrets(conn, self.box, [key], early.now)
            return AuthError(f"{key} had no signing secret yet; make one with `wfctl webhook rotate {key}` "
                             f"and sign requests with it", workflow=key)
        if early.stale is not None:
            raise early.stale
        if early.checked is not None and early.checked[0] == row.ciphertext:
            wrong = early.checked[1]
        else:  # first delivery, or the secret was rotated since: check under the secret of the store
            secret = self.box.decrypt(row.ciphertext)
            self._secrets[key] = (row.ciphertext, secret)
            wrong = _failure(signed.check_signature, secret, body)
        if wrong is not None:
            raise wrong
        if early.bad is not None:
            raise early.bad
        verdict = self.engine.admission.admit(conn, Request(key, webhook.TYPE, early.trigger), Target.of(row))
        if verdict.execution_id is None:
            return verdict.error()
        self._first_delivery(conn, row.id, key, signed.delivery(), early.now)  # a replay rolls the queueing back
        return verdict.execution_id

    def _first_delivery(self, conn: Connection, workflow_id: int, key: str, delivery: str, now: datetime) -> None:
        """Remember an accepted delivery for the timestamp window; AuthError if it was accepted already.

        A timestamp inside the window is not enough: the very same signed request sent again is a
        replay (for Standard Webhooks, the same ``webhook-id``, even re-signed with a new timestamp).
        Only accepted deliveries are remembered, so a sender may resend after a 429 or 400.
        """
        if now - self._purged > PURGE_EVERY:
            conn.execute(delete(webhook_deliveries).where(
                webhook_deliveries.c.received_at < now - timedelta(seconds=2 * TOLERANCE_SECONDS)))
            self._purged = now
        added = direct.execute(conn, _REMEMBER[conn.dialect.name], {
            "workflow_id": workflow_id, "signature": delivery, "received_at": now}) == 1
        if not added:
            raise AuthError(f"replayed request: this signed delivery to {key} was already accepted; sign each "
                            f"delivery with a fresh {TIMESTAMP_HEADER} (Standard Webhooks: a new "
                            f"{STANDARD_ID_HEADER})", workflow=key)


@dataclass(frozen=True)
class _Early:
    """What :meth:`WebhookIntake._early` found: each check's error (None: it passed), for its turn."""

    now: datetime
    stale: AuthError | None  # the timestamp
    checked: tuple[str, AuthError | None] | None  # the signature under the secret of that ciphertext
    trigger: dict[str, Any]
    bad: PayloadError | None  # the JSON


def _failure(check: Any, *args: Any) -> AuthError | None:
    try:
        check(*args)
    except AuthError as e:
        return e
    return None


@dataclass(frozen=True)
class Signed:
    """How a delivery is signed: the ``X-Wfc-*`` headers, or Standard Webhooks' (``standard``)."""

    timestamp: str | None
    signature: str | None
    message_id: str | None = None
    standard: bool = False

    def check_timestamp(self, now: datetime) -> None:
        """AuthError unless the timestamp is fresh."""
        check_timestamp(self.timestamp, now, STANDARD_TIMESTAMP_HEADER if self.standard else TIMESTAMP_HEADER)

    def check_signature(self, secret: str, body: bytes) -> None:
        """AuthError unless a signature is ``secret``'s."""
        if self.standard:
            check_standard_signature(secret, self.message_id, self.timestamp or "", body, self.signature)
        else:
            check_signature(secret, self.timestamp or "", body, self.signature)

    def delivery(self) -> str:
        """What identifies this delivery among those accepted: the signature, or the Standard message id."""
        if self.standard:
            return "id:" + hashlib.sha256((self.message_id or "").encode("utf-8", "replace")).hexdigest()
        return (self.signature or "").strip()[:100]
