"""API tokens: bearer credentials scoped to one account and a set of permissions.

``wfctl token create --account A --user U --permissions P1,P2 [--name N]`` prints the token once;
the store keeps only its SHA-256, so a leaked database yields no usable token. A token acts for
its user in its account and nowhere else: ``admin`` grants every permission, still in that one
account only. When the account has a directory loaded, the user must be in it and active, at
creation and on every use (deactivating a user in the host application shuts their tokens), and
the directory is the one source of what the user may do: a token's *effective* permissions are
those it was granted that its user also holds (:func:`effective`), worked out on every request,
so taking a permission from the user in the directory takes it from all their tokens at once.
Without a directory loaded, the granted permissions are the effective ones.

Permissions::

    workflow.read        read workflows, versions, audit, executions, secret fingerprints
    workflow.run_manual  start manual runs ("Run workflow" on a record page)
    workflow.dry_run     dry-run a workflow
    workflow.replay      see record and payload values in an impact preview (`wfctl check --replay`)
    workflow.retry       retry a failed or terminated execution
    workflow.manage      rotate a webhook secret, cancel an execution
    records.write        write records, post record events and inbound mail
    directory.write      replace the account directory, change an entry's status
    admin                all of the above
"""

from __future__ import annotations

import hashlib
import re
import secrets as random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from controller.errors import AuthError, NotFoundError, PermissionDenied, UsageError
from controller.model.ids import ID_MAX
from controller.model.names import NAME_PATTERN
from controller.model.permissions import PERMISSIONS
from controller.store import directory as store_directory
from controller.store.tables import api_tokens

PREFIX = "wfc_"
_NAME_MAX = 100
_ACCOUNT = re.compile(NAME_PATTERN)
t = api_tokens.c


@dataclass(frozen=True)
class Token:
    """A verified token: who it acts for, where, and what it may do."""

    id: int
    account: str
    user: str
    name: str | None
    permissions: frozenset[str]  # effective: granted and held by the user (see effective())
    granted: frozenset[str] = frozenset()

    def allows(self, permission: str) -> bool:
        return "admin" in self.permissions or permission in self.permissions

    def require(self, *any_of: str) -> None:
        """PermissionDenied naming the missing permission unless the token has one of ``any_of``."""
        if not any(self.allows(p) for p in any_of):
            wanted = " or ".join(any_of)
            if any(p in self.granted or "admin" in self.granted for p in any_of):
                raise PermissionDenied(
                    f"user:{self.user} does not hold the permission {wanted} in the directory of account "
                    f"{self.account}, so this token cannot use it; give the user the permission in the directory",
                    permission=any_of[0])
            raise PermissionDenied(
                f"this token lacks the permission {wanted}; create a token with it (`wfctl token create --account "
                f"{self.account} --user {self.user} --permissions {any_of[0]}`)", permission=any_of[0])

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "account": self.account, "user": self.user, "name": self.name,
                "permissions": sorted(self.permissions), "granted": sorted(self.granted)}


@dataclass(frozen=True)
class NewToken:
    """A token just made; ``bearer`` is shown this once and stored only as a hash."""

    token: Token
    bearer: str

    def view(self) -> dict[str, Any]:
        return {**self.token.view(), "token": self.bearer}


def hash_token(bearer: str) -> str:
    return hashlib.sha256(bearer.encode("utf-8", "surrogateescape")).hexdigest()


def parse_permissions(value: str | Iterable[str]) -> tuple[str, ...]:
    """``"workflow.read,records.write"`` (or a list) -> the permissions; UsageError for unknown ones."""
    items = value.split(",") if isinstance(value, str) else list(value)
    wanted = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    unknown = [p for p in wanted if p not in PERMISSIONS]
    if unknown:
        raise UsageError(f"unknown permission(s) {', '.join(map(repr, unknown))}; use some of: {', '.join(PERMISSIONS)}")
    if not wanted:
        raise UsageError(f"a token needs at least one permission; use some of: {', '.join(PERMISSIONS)}")
    return wanted


def create(conn: Connection, account: str, user: str, permissions: str | Iterable[str], now: datetime,
           *, name: str | None = None) -> NewToken:
    """Make a token for ``user`` in ``account``; the bearer string is in the result and nowhere else."""
    if not _ACCOUNT.fullmatch(account):
        raise UsageError(f"{account!r} is not an account name (lowercase letters, digits and '-', as the folders "
                         f"under workflows.d/)")
    if not user or len(user) > 200:
        raise UsageError("--user must be a user id of 1-200 characters (as in the account directory, e.g. u_alice)")
    granted = parse_permissions(permissions)
    if name is not None:
        name = name.strip()
        if not name or len(name) > _NAME_MAX or name.isdigit():
            raise UsageError(f"a token name must be 1-{_NAME_MAX} characters and not only digits (those are ids)")
        if conn.execute(select(t.id).where(t.account == account, t.name == name, t.revoked_at.is_(None))).first():
            raise UsageError(f"account {account} already has a token named {name!r}; revoke it first "
                             f"(`wfctl token revoke {name} --account {account}`) or pick another name")
    held = _check_user(conn, account, user, UsageError)
    bearer = PREFIX + random.token_urlsafe(32)
    row = {"account": account, "user_id": user, "name": name, "token_hash": hash_token(bearer),
           "permissions": list(granted), "created_at": now, "revoked_at": None}
    token_id = conn.execute(insert(api_tokens).values(row)).inserted_primary_key[0]  # type: ignore[index]
    return NewToken(_token({**row, "id": int(token_id)}, held), bearer)


def revoke(conn: Connection, account: str, id_or_name: str, now: datetime) -> Token:
    """Revoke the account's token with this id or name; it stops working at once."""
    text = str(id_or_name).strip()
    which = t.id == int(text) if text.isdigit() and int(text) <= ID_MAX else t.name == text
    row = conn.execute(select(api_tokens).where(t.account == account, t.revoked_at.is_(None), which)).mappings().first()
    if row is None:
        raise NotFoundError(f"account {account} has no active token {text!r} (an id or a name); nothing revoked")
    conn.execute(update(api_tokens).where(t.id == row["id"]).values(revoked_at=now))
    return _token(row, None)


def verify(conn: Connection, bearer: str | None) -> Token:
    """The token ``bearer`` is, or AuthError (missing, unknown, revoked, or its user not active)."""
    if not bearer:
        raise AuthError("missing bearer token; send `Authorization: Bearer <token>` (make one with "
                        "`wfctl token create`)")
    row = conn.execute(select(api_tokens).where(t.token_hash == hash_token(bearer))).mappings().first()
    if row is None:
        raise AuthError("the bearer token is not valid; check it, or create one with `wfctl token create`")
    if row["revoked_at"] is not None:
        raise AuthError(f"the bearer token was revoked at {row['revoked_at'].astimezone(UTC).isoformat()}; "
                        f"create a new one with `wfctl token create`")
    return _token(row, _check_user(conn, row["account"], row["user_id"], AuthError))


def list_tokens(conn: Connection, account: str) -> list[dict[str, Any]]:
    """The account's tokens (never the token strings), newest first, each with its effective permissions.

    ``permissions`` is what the token can do now (its user's directory entry applied; none when the user is
    missing or not active), ``granted`` what it was created with.
    """
    rows = conn.execute(select(api_tokens).where(t.account == account).order_by(t.id.desc())).mappings()
    holds: dict[str, frozenset[str] | None] = {}  # per user: most tokens share a few users
    listed = []
    for row in rows:
        user = row["user_id"]
        if user not in holds:
            try:
                holds[user] = _check_user(conn, account, user, AuthError)
            except AuthError:
                holds[user] = frozenset()
        held = holds[user]
        listed.append({**_token(row, held).view(), "created_at": row["created_at"].isoformat(),
                       "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None})
    return listed


def effective(granted: Iterable[str], held: Iterable[str] | None) -> frozenset[str]:
    """What a token granted ``granted`` may do for a user holding ``held`` (None: no directory, no cap).

    ``admin`` on either side stands for every permission, so an admin token of a user holding
    ``workflow.read`` can read, and a ``workflow.read`` token of an admin user can read.
    """
    mine = frozenset(granted)
    if held is None:
        return mine
    theirs = frozenset(held)
    if "admin" in theirs:
        return mine
    if "admin" in mine:
        return theirs
    return mine & theirs


def _check_user(conn: Connection, account: str, user: str,
                error: type[UsageError | AuthError]) -> frozenset[str] | None:
    """The permissions ``user`` holds in the account's directory (None when none is loaded); ``error`` if not active."""
    if not store_directory.has_directory(conn, account):
        return None
    entry = store_directory.get(conn, account, f"user:{user}")
    if entry is None:
        raise error(f"user:{user} is not in the directory of account {account}; add the user there first")
    if not entry.active:
        raise error(f"user:{user} is {entry.status} in the directory of account {account}; its tokens do not work "
                    f"until the user is active again")
    return frozenset(str(p) for p in entry.data.get("permissions") or ())


def _token(row: Any, held: Iterable[str] | None) -> Token:
    granted = frozenset(row["permissions"])
    return Token(row["id"], row["account"], row["user_id"], row["name"], effective(granted, held), granted)
