"""Webhook signing secrets: one per webhook workflow, encrypted at rest, rotated on request.

Where a secret comes from
    A webhook workflow gets a secret when it is first applied: :func:`ensure_webhook_secrets`
    (after each reconcile pass) makes one for every active webhook workflow that has none. The
    HTTP service and ``wfctl webhook rotate`` make a missing one on first sight as well, so a
    webhook is never open. Nobody is shown that first secret: :func:`rotate` (``wfctl webhook
    rotate A/N`` or ``POST /api/v1/workflows/<a>/<n>/webhook-secret``) makes the one you hand to
    the sender, returns it once, and from then on only its fingerprint and creation time are
    visible. Every creation and rotation is an audit event (``secret_created``, ``secret_rotated``).

Rotation is instant
    :func:`rotate` replaces the row in one transaction. The webhook intake reads the secret in
    the transaction that queues the execution, with a shared row lock on PostgreSQL (SQLite
    serialises writers anyway), so a request racing the rotation either committed before it or
    is checked against the new secret: after the rotation answers, the old secret opens nothing.

Encryption
    Fernet (AES-128-CBC with HMAC-SHA256) under the controller's key: ``WFC_SECRET_KEY`` when
    set, else ``<data-dir>/secret.key``, generated once with mode 0600. Keep that key: without
    it the stored secrets cannot be decrypted and every webhook must be rotated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets as random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from controller.errors import NotFoundError, StoreError, UsageError
from controller.store.tables import audit_events, webhook_secrets, workflows

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

    from controller.settings import Settings
    from controller.store import Store

log = logging.getLogger(__name__)

KEY_ENV = "WFC_SECRET_KEY"
KEY_FILE = "secret.key"
PREFIX = "whsec_"
_CACHE_SIZE = 4096
_MAKE_KEY = "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"

w, s = workflows.c, webhook_secrets.c


class SecretBox:
    """Encrypts and decrypts secrets under the controller's Fernet key (decryptions are cached).

    The key is checked at once; cryptography is imported at the first encryption or decryption (a
    sync that makes no secret never needs it).
    """

    def __init__(self, key: bytes | str):
        self._key = key.encode() if isinstance(key, str) else key
        try:
            fits = len(base64.urlsafe_b64decode(key)) == 32  # what Fernet(key) checks
        except (ValueError, TypeError):
            fits = False
        if not fits:
            raise UsageError(f"{KEY_ENV} is not a Fernet key (32 url-safe base64-encoded bytes); make one with "
                             f"{_MAKE_KEY}")
        self._sealer: Fernet | None = None
        self._plain: dict[str, str] = {}

    @property
    def _fernet(self) -> Fernet:
        if self._sealer is None:
            from cryptography.fernet import Fernet

            self._sealer = Fernet(self._key)
        return self._sealer

    @classmethod
    def load(cls, data_dir: Path, key: str | None = None) -> SecretBox:
        """The box for ``key`` (the value of ``WFC_SECRET_KEY``), else for ``<data_dir>/secret.key``."""
        return cls(key.strip() if key and key.strip() else read_or_create_key(data_dir / KEY_FILE))

    @classmethod
    def for_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> SecretBox:
        """The box of ``wfctl``'s settings: ``WFC_SECRET_KEY`` from ``environ``, else the data directory's key."""
        env = os.environ if environ is None else environ
        key = env.get(KEY_ENV)
        return cls.load(settings.data_dir if key else settings.data_path(), key)

    def derive(self, purpose: str) -> bytes:
        """A key for ``purpose`` (e.g. signing the console's session cookie), derived from this one."""
        return hmac.new(self._key, purpose.encode(), hashlib.sha256).digest()

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        found = self._plain.get(ciphertext)
        if found is None:
            from cryptography.fernet import InvalidToken

            try:
                found = self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
            except InvalidToken:
                raise StoreError(f"a webhook secret in the store cannot be decrypted with this key: was {KEY_ENV} "
                                 f"or the data directory's {KEY_FILE} changed? Restore that key, or rotate the "
                                 f"workflow's secret (`wfctl webhook rotate ACCOUNT/NAME`)") from None
            if len(self._plain) >= _CACHE_SIZE:
                self._plain.clear()
            self._plain[ciphertext] = found
        return found


def read_or_create_key(path: Path) -> bytes:
    """The Fernet key in ``path``; generated there first (mode 0600) when it does not exist."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.{random.token_hex(4)}")
        from cryptography.fernet import Fernet

        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key() + b"\n")
            os.link(partial, path)  # all or nothing, and the first of two racing processes wins
            log.warning("generated the secret key %s (mode 0600); back it up: webhook secrets cannot be "
                        "decrypted without it", path)
        except FileExistsError:
            log.info("%s was generated by another process; using it", path)
        finally:
            partial.unlink(missing_ok=True)
        return _read_key(path)
    except OSError as e:
        raise UsageError(f"cannot create the secret key {path}: {e}; set {KEY_ENV} or make the data directory "
                         f"writable") from None


def _read_key(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(path, 0o600)
        log.warning("%s was readable by others (mode %03o); made it 0600", path, mode)
    return path.read_bytes().strip()


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 256 random bits in standard base64.

    That is the Standard Webhooks form, so the same text configures a sender that signs the
    ``X-Wfc-*`` way (the whole text is the HMAC key) and one using a Standard Webhooks library
    (the base64 part, decoded, is the key).
    """
    return PREFIX + base64.b64encode(random.token_bytes(32)).decode("ascii")


def fingerprint(secret: str) -> str:
    """What may be shown of a secret: the start of its SHA-256, enough to tell two secrets apart."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class SecretInfo:
    """What ``GET …/webhook-secret`` shows of a secret: never the secret itself."""

    workflow: str
    fingerprint: str
    created_at: datetime
    generation: int

    def view(self) -> dict[str, Any]:
        return {"workflow": self.workflow, "fingerprint": self.fingerprint,
                "created_at": self.created_at.astimezone(UTC).isoformat(), "generation": self.generation}


@dataclass(frozen=True)
class Rotated:
    """A new secret, in the clear exactly once."""

    info: SecretInfo
    secret: str

    def view(self) -> dict[str, Any]:
        return {**self.info.view(), "secret": self.secret}


def webhook_workflow(conn: Connection, key: str) -> Any:
    """The row (id, key, version) of webhook workflow ``key``; NotFoundError if there is none."""
    row = conn.execute(select(w.id, w.key, w.version, w.trigger_type)
                       .where(w.key == key, w.deleted.is_(False))).first()
    if row is None:
        raise NotFoundError(f"no workflow {key!r}; check the name and `wfctl status`", workflow=key)
    if row.trigger_type != "webhook":
        raise NotFoundError(f"{key} is not a webhook workflow (its trigger is {row.trigger_type or 'not valid yet'}); "
                            f"only workflows with `trigger: {{type: webhook}}` have a signing secret", workflow=key)
    return row


def current(conn: Connection, box: SecretBox, workflow_id: int, *, lock: bool = False) -> str | None:
    """The workflow's secret in the clear, or None; ``lock`` holds a shared row lock until commit."""
    query = select(s.ciphertext).where(s.workflow_id == workflow_id)
    ciphertext = conn.execute(query.with_for_update(read=True) if lock else query).scalar()
    return None if ciphertext is None else box.decrypt(ciphertext)


def describe(conn: Connection, key: str) -> SecretInfo:
    """Fingerprint and creation time of the secret of ``key``; NotFoundError when it has none."""
    row = webhook_workflow(conn, key)
    found = conn.execute(select(s.fingerprint, s.created_at, s.generation).where(s.workflow_id == row.id)).first()
    if found is None:
        raise NotFoundError(f"{key} has no signing secret yet; make one with `wfctl webhook rotate {key}`",
                            workflow=key)
    return SecretInfo(key, found.fingerprint, found.created_at, found.generation)


def ensure_secrets(conn: Connection, box: SecretBox, keys: Iterable[str] | None, now: datetime,
                   *, actor: str = "wfctl") -> list[str]:
    """Make a secret for each active webhook workflow (of ``keys``, or all) that has none; idempotent.

    Runs in the caller's transaction; returns the keys that got one. Safe against a concurrent
    call: a row another writer made first is left as it is.
    """
    missing = conn.execute(_missing(keys)).all()
    if not missing:
        return []
    rows = {}
    for workflow_id, _, _ in missing:
        secret = new_secret()
        rows[workflow_id] = {"workflow_id": workflow_id, "ciphertext": box.encrypt(secret),
                             "fingerprint": fingerprint(secret), "generation": 1, "created_at": now}
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    # One statement for them all (multi-row VALUES, batched by SQLAlchemy); RETURNING names the rows it
    # made, not those a concurrent writer made first (the rowcount of an upsert is -1 on psycopg anyway).
    stmt = (dialect.insert(webhook_secrets).on_conflict_do_nothing(index_elements=["workflow_id"])
            .returning(webhook_secrets.c.workflow_id))
    inserted = set(conn.execute(stmt, list(rows.values())).scalars())
    made, audit = [], []
    for workflow_id, key, version in missing:  # in key order, as the query gave them
        if workflow_id in inserted:
            made.append(key)
            audit.append({"workflow_id": workflow_id, "at": now, "actor": actor, "action": "secret_created",
                          "version": version, "commit": None, "changes": [],
                          "message": f"webhook signing secret created ({rows[workflow_id]['fingerprint']}); nobody "
                                     f"has seen it: `wfctl webhook rotate {key}` makes one to give to the sender"})
    if audit:
        conn.execute(insert(audit_events), audit)
        log.info("made webhook signing secrets for %s", ", ".join(made))
    return made


def _missing(keys: Iterable[str] | None) -> Select[Any]:
    """The active webhook workflows (of ``keys``, or all) without a secret: id, key, version."""
    query = (
        select(w.id, w.key, w.version)
        .outerjoin(webhook_secrets, s.workflow_id == w.id)
        .where(w.trigger_type == "webhook", w.deleted.is_(False), w.content_hash.is_not(None),
               s.workflow_id.is_(None))
        .order_by(w.key)
    )
    return query if keys is None else query.where(w.key.in_(sorted(set(keys))))


def ensure_webhook_secrets(store: Store, box: SecretBox | Settings, now: datetime | None = None,
                           *, environ: Mapping[str, str] | None = None) -> list[str]:
    """:func:`ensure_secrets` for every active webhook workflow, in its own transaction.

    Call it after each reconcile pass; one query when nothing is missing. ``box`` may be the
    settings, whose key is then read as :meth:`SecretBox.for_settings` does.
    """
    sealer = box if isinstance(box, SecretBox) else SecretBox.for_settings(box, environ)
    with store.read() as conn:  # the usual answer, none missing, takes no write lock
        if conn.execute(_missing(None).limit(1)).first() is None:
            return []
    with store.tx() as conn:
        return ensure_secrets(conn, sealer, None, now or datetime.now(UTC))


def rotate(conn: Connection, box: SecretBox, key: str, *, actor: str, now: datetime) -> Rotated:
    """Replace the secret of webhook workflow ``key`` (in the caller's transaction); the old one is dead."""
    row = webhook_workflow(conn, key)
    old = conn.execute(select(s.fingerprint, s.generation).where(s.workflow_id == row.id).with_for_update()).first()
    secret = new_secret()
    values = {"workflow_id": row.id, "ciphertext": box.encrypt(secret), "fingerprint": fingerprint(secret),
              "generation": (old.generation if old else 0) + 1, "created_at": now}
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(webhook_secrets).values(values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["workflow_id"], set_={
        "ciphertext": stmt.excluded.ciphertext, "fingerprint": stmt.excluded.fingerprint,
        "generation": webhook_secrets.c.generation + 1, "created_at": stmt.excluded.created_at}))
    generation = conn.execute(select(s.generation).where(s.workflow_id == row.id)).scalar_one()
    conn.execute(insert(audit_events).values(
        workflow_id=row.id, at=now, actor=actor, action="secret_rotated", version=row.version, commit=None,
        changes=[{"path": "webhook.secret", "old": old.fingerprint if old else None, "new": values["fingerprint"]}],
        message=f"webhook signing secret rotated to generation {generation} ({values['fingerprint']}); "
                f"the previous secret no longer verifies"))
    log.info("%s rotated the webhook secret of %s (generation %d)", actor, key, generation)
    return Rotated(SecretInfo(key, values["fingerprint"], now, generation), secret)
