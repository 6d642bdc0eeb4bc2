"""A signed webhook becomes a queued execution: ``POST /hooks/<account>/<name>`` without HTTP.

One transaction reads the workflow and its secret (under a shared row lock on PostgreSQL, so a
concurrent rotation waits for it), checks timestamp and signature, parses the body, applies the
rate limit and queues the execution (directly: the row read here already answers what
``Engine.start`` would check). Anything refused writes nothing, except a rate-limit drop (counted)
and a workflow's first secret when it had none yet (the request is refused with 401). The checks
run in the order the answers are documented: unknown or not a webhook workflow (404), bad,
missing or stale signature (401), malformed JSON (400), disabled (409), over the rate limit (429).

On SQLite every writer takes the database's write lock; :attr:`WebhookIntake.lock` makes this
process's writers queue for it in Python instead of in SQLite's busy handler, whose sleeps would
add tens of milliseconds under load. Hand the same lock to other writers of the process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, bindparam, delete, null, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from controller.engine import queue
from controller.engine.clock import Clock
from controller.errors import AuthError, GuardError, NotFoundError, RateLimited
from controller.safeguards import ratelimit
from controller.security import secrets
from controller.security.payloads import parse_json
from controller.security.signing import TIMESTAMP_HEADER, TOLERANCE_SECONDS, check_signature, check_timestamp
from controller.store.tables import webhook_deliveries, webhook_secrets, workflow_versions, workflows

if TYPE_CHECKING:
    from controller.engine.runtime import Engine

w, v, s = workflows.c, workflow_versions.c, webhook_secrets.c
_COLUMNS = (w.id, w.trigger_type, w.enabled, w.version, w.content_hash)
_WITH_SECRET = (select(*_COLUMNS, s.ciphertext).join(webhook_secrets, s.workflow_id == w.id)
                .where(w.key == bindparam("key"), w.deleted.is_(False)).with_for_update(read=True, of=webhook_secrets))
_WORKFLOW = select(*_COLUMNS, null().label("ciphertext")).where(w.key == bindparam("key"), w.deleted.is_(False))


class WebhookIntake:
    """Receives signed webhooks for one engine."""

    def __init__(self, engine: Engine, box: secrets.SecretBox, *, clock: Clock | None = None,
                 lock: AbstractContextManager[Any] | None = None):
        self.engine = engine
        self.box = box
        self.clock = clock or engine.clock
        if lock is None:
            lock = threading.RLock() if engine.store.dialect == "sqlite" else nullcontext()
        self.lock = lock
        self._limits: dict[tuple[int, int], ratelimit.RateLimit | None] = {}
        self._purged = datetime.min.replace(tzinfo=UTC)  # when old deliveries were last forgotten

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction of the store, taken in turn with this process's other writers."""
        with self.lock, self.engine.store.tx() as conn:
            yield conn

    def receive(self, key: str, *, timestamp: str | None, signature: str | None, body: bytes) -> int:
        """Queue an execution of webhook workflow ``key`` with the JSON ``body``; returns its id."""
        refused: AuthError | RateLimited | None = None
        with self.writing() as conn:
            now = self.clock.now()
            # One query on the common path; the secret row stays share-locked (PostgreSQL) until commit.
            row = conn.execute(_WITH_SECRET, {"key": key}).first() or conn.execute(_WORKFLOW, {"key": key}).first()
            if row is None:
                raise NotFoundError(f"no workflow {key!r}; check the URL (/hooks/<account>/<name>) and `wfctl status`",
                                    workflow=key)
            if row.trigger_type != "webhook":
                raise NotFoundError(f"{key} is not a webhook workflow (its trigger is "
                                    f"{row.trigger_type or 'not valid yet'}); nothing was queued", workflow=key)
            secret = None if row.ciphertext is None else self.box.decrypt(row.ciphertext)
            if secret is None:  # never ensured (not wired after reconcile): make one, refuse this request
                secrets.ensure_secrets(conn, self.box, [key], now)
                refused = AuthError(f"{key} had no signing secret yet; make one with `wfctl webhook rotate {key}` "
                                    f"and sign requests with it", workflow=key)
            else:
                check_timestamp(timestamp, now)
                check_signature(secret, timestamp or "", body, signature)
                payload = parse_json(body)
                if row.content_hash is None:
                    raise GuardError(f"{key} has no valid version to run; fix the file and commit", workflow=key)
                if not row.enabled:
                    raise GuardError(f"{key} is disabled (spec.enabled: false); enable it in git to accept webhooks",
                                     workflow=key)
                refused = self._over_limit(conn, row.id, row.version, key, now)
                if refused is None:
                    self._first_delivery(conn, row.id, key, signature or "", now)
                    # The checks of Engine.start are done above on the row already read; enqueue directly.
                    trigger = {"type": "webhook", "body": payload}
                    return queue.enqueue(conn, [{"workflow_id": row.id, "workflow_key": key, "trigger": trigger}],
                                         now)[0]
        raise refused

    def _first_delivery(self, conn: Connection, workflow_id: int, key: str, signature: str, now: datetime) -> None:
        """Remember an accepted signature for the timestamp window; AuthError if it was accepted already.

        A timestamp inside the window is not enough: the very same signed request sent again is a
        replay. Only accepted deliveries are remembered, so a sender may resend after a 429 or 400.
        """
        if now - self._purged > timedelta(seconds=60):
            conn.execute(delete(webhook_deliveries).where(
                webhook_deliveries.c.received_at < now - timedelta(seconds=2 * TOLERANCE_SECONDS)))
            self._purged = now
        dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        added = conn.execute(dialect_insert(webhook_deliveries).values(
            workflow_id=workflow_id, signature=signature.strip()[:100], received_at=now).on_conflict_do_nothing()
            .returning(webhook_deliveries.c.workflow_id)).first()  # rowcount is not reliable across drivers
        if added is None:
            raise AuthError(f"replayed request: this signed delivery to {key} was already accepted; sign each "
                            f"delivery with a fresh {TIMESTAMP_HEADER}", workflow=key)

    def _over_limit(self, conn: Connection, workflow_id: int, version: int, key: str,
                    now: datetime) -> RateLimited | None:
        limit = self._limit(conn, workflow_id, version)
        if limit is None:
            return None
        wait = ratelimit.retry_after(conn, workflow_id, limit, now)
        if wait is None:
            return None
        ratelimit.count_drop(conn, workflow_id, key, now)
        return ratelimit.refusal(key, limit, wait)

    def _limit(self, conn: Connection, workflow_id: int, version: int) -> ratelimit.RateLimit | None:
        """The rate limit of a version (versions never change, so this is cached)."""
        cache_key = (workflow_id, version)
        if cache_key not in self._limits:
            content = conn.execute(select(v.content).where(and_(v.workflow_id == workflow_id, v.version == version))
                                   ).scalar()
            if len(self._limits) > 4096:
                self._limits.clear()
            self._limits[cache_key] = ratelimit.of(content)
        return self._limits[cache_key]
