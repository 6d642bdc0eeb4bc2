"""The built-in record store: tickets, leads, deals, ... of the embedded default host.

A record is a JSON object of one ``type`` (a built-in entity such as ``ticket``, or a custom
object type as ``object_type:<id>``) in one account, with an integer id. Callers see it as a
*view*: ``{"id": "42", "type": "ticket", **data, "created_at", "updated_at", "last_activity_at"}``
with ISO-8601 UTC times. Deletes are soft.

``last_activity_at`` drives inactivity triggers: :func:`quiet_records` finds records quiet since
a time that have not fired for the current quiet spell, and :func:`mark_fired` records that one
did. A later activity moves ``last_activity_at`` and so starts a new spell.

Every function runs in the caller's transaction (``Store.write()`` or ``Store.read()``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.dialects import postgresql, sqlite

from controller.errors import NotFoundError, UsageError
from controller.model.entities import ENTITY_TYPES
from controller.model.ids import ID_MAX
from controller.model.refs import RefField
from controller.store.tables import as_utc, inactivity_marks, records

__all__ = [
    "RESERVED_FIELDS",
    "check_type",
    "create",
    "delete",
    "ever_existed",
    "get",
    "get_many",
    "list_records",
    "mark_fired",
    "parse_record_ref",
    "quiet_records",
    "update",
]

RESERVED_FIELDS = ("id", "type", "created_at", "updated_at", "last_activity_at")
"""Keys of a view that the store sets; record data may not contain them."""

_OBJECT_TYPE = RefField("object_type")
_TYPE_MAX = 32  # records.type is String(32)
r = records.c


def check_type(type_: str) -> str:
    """``type_`` if it is a record type (a built-in entity or ``object_type:<id>``), else UsageError."""
    if type_ in ENTITY_TYPES:
        return type_
    if _OBJECT_TYPE.ref_id(type_) is None:
        raise UsageError(f"{type_!r} is not a record type (use one of: {', '.join(ENTITY_TYPES)}, "
                         f"or object_type:<id>)")
    if len(type_) > _TYPE_MAX:
        raise UsageError(f"record type {type_!r} is longer than {_TYPE_MAX} characters; use a shorter "
                         f"object type id")
    return type_


def parse_record_ref(ref: str) -> tuple[str, str]:
    """``"ticket:42"`` -> ``("ticket", "42")``; ``"object_type:ot_17:7"`` -> ``("object_type:ot_17", "7")``."""
    type_, sep, record_id = ref.rpartition(":")
    if not sep or not (record_id.isascii() and record_id.isdigit()):
        raise UsageError(f"{ref!r} is not a record reference (use <type>:<id>, e.g. ticket:42)")
    return check_type(type_), record_id


def create(conn: Connection, account: str, type: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Store a new record of ``type``; return its view."""
    check_type(type)
    _check_data(data)
    at = as_utc(now)
    row = {"account": account, "type": type, "data": dict(data), "created_at": at, "updated_at": at,
           "last_activity_at": at, "deleted": False}
    key = conn.execute(insert(records).values(row)).inserted_primary_key
    assert key is not None  # an INSERT of one row always has one
    new_id = key[0]
    return _view({**row, "id": new_id})


def update(
    conn: Connection,
    account: str,
    type: str,
    record_id: str,
    data: dict[str, Any],
    now: datetime,
    *,
    touch_activity: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge ``data`` into the record (top-level keys replace, others stay); return ``(before, after)``.

    With ``touch_activity`` the change counts as activity (moves ``last_activity_at``); pass False
    for changes an automation makes that should not restart an inactivity spell.
    """
    _check_data(data)
    row = _load(conn, account, type, record_id, lock=True)
    at = as_utc(now)
    changes: dict[str, Any] = {"data": {**row["data"], **data}, "updated_at": at}
    if touch_activity:
        changes["last_activity_at"] = at
    conn.execute(sql_update(records).where(r.id == row["id"]).values(changes))
    return _view(row), _view({**row, **changes})


def delete(conn: Connection, account: str, type: str, record_id: str, now: datetime) -> dict[str, Any]:
    """Soft-delete the record; return its last view (as it was before the delete)."""
    row = _load(conn, account, type, record_id, lock=True)
    conn.execute(sql_update(records).where(r.id == row["id"]).values(deleted=True, updated_at=as_utc(now)))
    return _view(row)


def get(conn: Connection, account: str, type: str, record_id: str) -> dict[str, Any]:
    """The view of one record; NotFoundError if it does not exist, is deleted or is of another type."""
    return _view(_load(conn, account, type, record_id))


def get_many(conn: Connection, account: str, type: str, record_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The views of those of ``record_ids`` that exist (not deleted, of this type), by id: one query for many."""
    check_type(type)
    ids = sorted({int(t) for t in map(str, record_ids) if t.isascii() and t.isdigit() and int(t) <= ID_MAX})
    if not ids:
        return {}
    found = conn.execute(_live(account, type).where(r.id.in_(ids))).mappings()
    return {str(row["id"]): _view(dict(row)) for row in found}


def ever_existed(conn: Connection, account: str, type: str, record_id: str) -> bool:
    """Whether the record is or was (deleted since) in the built-in store."""
    check_type(type)
    text = str(record_id)
    if not (text.isascii() and text.isdigit() and int(text) <= ID_MAX):
        return False
    query = select(r.id).where(r.account == account, r.type == type, r.id == int(text))
    return conn.execute(query).first() is not None


def list_records(conn: Connection, account: str, type: str, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` records of ``type`` (highest id first), deleted ones left out."""
    check_type(type)
    if limit < 1:
        raise UsageError(f"limit must be at least 1 (got {limit})")
    query = _live(account, type).order_by(r.id.desc()).limit(limit)
    return [_view(dict(row)) for row in conn.execute(query).mappings()]


def quiet_records(
    conn: Connection, account: str, type: str, older_than: datetime, workflow_id: int, limit: int = 500
) -> list[dict[str, Any]]:
    """Records of ``type`` with no activity after ``older_than`` that ``workflow_id`` has not fired for yet.

    "Not fired yet" means no :func:`mark_fired` for this record with its current ``last_activity_at``:
    each quiet spell fires once. Oldest activity first.
    """
    check_type(type)
    m = inactivity_marks.c
    fired = and_(m.workflow_id == workflow_id, m.record_id == r.id, m.activity_at == r.last_activity_at)
    query = (
        _live(account, type)
        .outerjoin(inactivity_marks, fired)
        .where(r.last_activity_at <= as_utc(older_than), m.record_id.is_(None))
        .order_by(r.last_activity_at, r.id)
        .limit(limit)
    )
    return [_view(dict(row)) for row in conn.execute(query).mappings()]


def mark_fired(conn: Connection, workflow_id: int, record_id: str | int, activity_at: datetime | str) -> None:
    """Remember that ``workflow_id`` fired for the record's quiet spell that began at ``activity_at``.

    ``activity_at`` is the record's ``last_activity_at`` (a datetime or the view's ISO string).
    """
    at = as_utc(datetime.fromisoformat(activity_at) if isinstance(activity_at, str) else activity_at)
    values = {"workflow_id": workflow_id, "record_id": int(record_id), "activity_at": at}
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(inactivity_marks).values(values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["workflow_id", "record_id"],
                                            set_={"activity_at": stmt.excluded.activity_at}))


# -- helpers -----------------------------------------------------------------------------------


def _check_data(data: object) -> None:
    if not isinstance(data, dict):
        raise UsageError(f"record data must be a JSON object (key: value), got {type(data).__name__}")
    reserved = [key for key in RESERVED_FIELDS if key in data]
    if reserved:
        raise UsageError(f"record data may not set {', '.join(map(repr, reserved))}: the store sets "
                         f"{', '.join(RESERVED_FIELDS)}; rename the field")
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise UsageError(f"record data is not JSON ({e}); use strings, numbers, booleans, lists and objects") from None


def _live(account: str, type: str) -> Select[Any]:
    return select(records).where(r.account == account, r.type == type, r.deleted.is_(False))


def _load(conn: Connection, account: str, type: str, record_id: str, *, lock: bool = False) -> dict[str, Any]:
    check_type(type)
    text = str(record_id)
    if text.isascii() and text.isdigit() and int(text) <= ID_MAX:
        query = _live(account, type).where(r.id == int(text))
        row = conn.execute(query.with_for_update() if lock else query).mappings().first()
        if row is not None:
            return dict(row)
    raise NotFoundError(f"record {type}:{record_id} does not exist in account {account!r} (or was deleted); "
                        f"check the id and the type")


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "type": row["type"], **row["data"], "created_at": _iso(row["created_at"]),
            "updated_at": _iso(row["updated_at"]), "last_activity_at": _iso(row["last_activity_at"])}



def _iso(value: datetime) -> str:
    return as_utc(value).isoformat()
