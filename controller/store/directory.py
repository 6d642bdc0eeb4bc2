"""The account directory in the store: load, change a status, look references up.

The host application pushes an account's whole directory (``wfctl directory load``), which
*replaces* what the store held for that account; single statuses change with :func:`set_status`.
Functions taking a ``Connection`` run in the caller's transaction. :class:`StoreDirectory` is the
engine's read side (the :class:`~controller.engine.directory.Directory` protocol);
:func:`snapshot` (with :func:`controller.model.entries.check_refs`) is the reconciler's: one query for every account of a
pass, then a pure check per workflow.

An account without any entry has no directory loaded: references are not checked for it
(:func:`has_directory`, and :func:`snapshot` leaves such accounts out).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, insert, select, update

from controller.errors import NotFoundError, UsageError
from controller.model.entries import ENTRY_STATUSES, KINDS, DirectoryEntry, missing_message
from controller.store.db import Store
from controller.store.tables import as_utc, directory_entries

__all__ = [
    "StoreDirectory",
    "get",
    "has_directory",
    "list_entries",
    "parse_ref",
    "replace_account",
    "set_status",
    "snapshot",
]

t = directory_entries.c


def parse_ref(ref: str) -> tuple[str, str]:
    """``"mailbox:mb_support"`` -> ``("mailbox", "mb_support")``; UsageError for anything else."""
    kind, sep, ref_id = ref.partition(":")
    if not sep or kind not in KINDS or not ref_id:
        raise UsageError(f"{ref!r} is not a directory reference (use <kind>:<id> with kind one of "
                         f"{', '.join(KINDS)}, e.g. mailbox:mb_support)")
    return kind, ref_id


def replace_account(conn: Connection, account: str, entries: list[DirectoryEntry], now: datetime) -> dict[str, int]:
    """Make ``entries`` the whole directory of ``account``; return how many entries of each kind it has."""
    _check_entries(account, entries)
    conn.execute(delete(directory_entries).where(t.account == account))
    if entries:
        conn.execute(insert(directory_entries), [_row(account, entry, now) for entry in entries])
    counts = Counter(entry.kind for entry in entries)
    return {kind: counts[kind] for kind in KINDS}


def _check_entries(account: str, entries: list[DirectoryEntry]) -> None:
    seen: set[str] = set()
    for entry in entries:
        if entry.kind not in KINDS:
            raise UsageError(f"directory entry {entry.ref!r} of account {account!r} has an unknown kind "
                             f"(use one of: {', '.join(KINDS)})")
        _check_status(entry.status)
        if entry.ref in seen:
            raise UsageError(f"{entry.ref} appears twice in the directory for account {account!r}; "
                             f"ids must be unique per kind")
        seen.add(entry.ref)


def _check_status(status: str) -> None:
    if status not in ENTRY_STATUSES:
        raise UsageError(f"unknown status {status!r} (use one of: {', '.join(ENTRY_STATUSES)})")


def _row(account: str, entry: DirectoryEntry, now: datetime) -> dict[str, Any]:
    return {"account": account, "kind": entry.kind, "ref_id": entry.id, "name": entry.name,
            "status": entry.status, "data": dict(entry.data), "updated_at": as_utc(now)}


def set_status(conn: Connection, account: str, ref: str, status: str, now: datetime) -> DirectoryEntry:
    """Change the status of one entry; NotFoundError if ``ref`` is not in the account's directory."""
    kind, ref_id = parse_ref(ref)
    _check_status(status)
    result = conn.execute(
        update(directory_entries)
        .where(t.account == account, t.kind == kind, t.ref_id == ref_id)
        .values(status=status, updated_at=as_utc(now))
    )
    if result.rowcount == 0:
        raise NotFoundError(missing_message(ref, account))
    found = get(conn, account, ref)
    assert found is not None  # updated just now, in this transaction
    return found


def get(conn: Connection, account: str, ref: str) -> DirectoryEntry | None:
    """The entry ``ref`` names in ``account``, or None (also for a malformed ``ref``)."""
    kind, sep, ref_id = ref.partition(":")
    if not sep or kind not in KINDS:
        return None
    row = conn.execute(
        select(t.kind, t.ref_id, t.name, t.status, t.data)
        .where(t.account == account, t.kind == kind, t.ref_id == ref_id)
    ).first()
    return _entry(row) if row else None


def list_entries(conn: Connection, account: str, kind: str | None = None) -> list[DirectoryEntry]:
    """The account's entries (of one ``kind`` if given), ordered by kind as in KINDS, then id."""
    query = select(t.kind, t.ref_id, t.name, t.status, t.data).where(t.account == account)
    if kind is not None:
        if kind not in KINDS:
            raise UsageError(f"unknown directory kind {kind!r} (use one of: {', '.join(KINDS)})")
        query = query.where(t.kind == kind)
    entries = [_entry(row) for row in conn.execute(query)]
    return sorted(entries, key=lambda e: (KINDS.index(e.kind), e.id))


def has_directory(conn: Connection, account: str) -> bool:
    """Whether the account has a directory loaded (any entry); references are checked only then."""
    return bool(conn.execute(select(exists().where(t.account == account))).scalar())


def snapshot(conn: Connection, accounts: Iterable[str]) -> dict[str, dict[str, DirectoryEntry]]:
    """``account -> ref -> entry`` for the given accounts, in one query.

    Accounts with no directory loaded are left out, so ``account in result`` is :func:`has_directory`.
    """
    wanted = sorted(set(accounts))
    if not wanted:
        return {}
    rows = conn.execute(select(t.account, t.kind, t.ref_id, t.name, t.status, t.data).where(t.account.in_(wanted)))
    found: dict[str, dict[str, DirectoryEntry]] = {}
    for row in rows:
        entry = _entry(row)
        found.setdefault(row.account, {})[entry.ref] = entry
    return found


class StoreDirectory:
    """The :class:`~controller.engine.directory.Directory` over the store: one short read per lookup."""

    def __init__(self, store: Store):
        self.store = store

    def get(self, account: str, ref: str) -> DirectoryEntry | None:
        """The entry a reference like ``mailbox:mb_support`` names in ``account``, or None."""
        with self.store.read() as conn:
            return get(conn, account, ref)


def _entry(row: Any) -> DirectoryEntry:
    return DirectoryEntry(kind=row.kind, id=row.ref_id, name=row.name, status=row.status, data=dict(row.data))

