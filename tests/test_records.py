"""The built-in record store: views, merge updates, soft deletes, errors and inactivity spells."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert

from controller.errors import NotFoundError, UsageError
from controller.store import Store, open_store
from controller.store import records as rec
from controller.store.tables import workflows

NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    store = open_store(store_url)
    yield store
    store.close()


def _create(store: Store, data: dict[str, object], type_: str = "ticket", at: datetime = NOW,
            account: str = "acme") -> dict[str, object]:
    with store.write() as conn:
        return rec.create(conn, account, type_, data, at)


def _workflow(store: Store, name: str = "stale") -> int:
    with store.write() as conn:
        result = conn.execute(insert(workflows).values(
            key=f"acme/{name}", account="acme", name=name, path=f"acme/{name}.yaml", version=1, enabled=True,
            calls=[], deleted=False, sync="Synced", message="", conditions=[], created_at=NOW, updated_at=NOW))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def test_create_returns_the_view(store: Store) -> None:
    """A new record's view has a string id, its type, its data and three equal ISO timestamps."""
    view = _create(store, {"title": "Printer on fire", "priority": "urgent"})
    iso = NOW.isoformat()
    assert view == {"id": view["id"], "type": "ticket", "title": "Printer on fire", "priority": "urgent",
                    "created_at": iso, "updated_at": iso, "last_activity_at": iso}
    assert isinstance(view["id"], str) and view["id"].isdigit()
    with store.read() as conn:
        assert rec.get(conn, "acme", "ticket", str(view["id"])) == view


def test_times_are_stored_and_shown_in_utc(store: Store) -> None:
    """A time given in another zone comes back as the same instant in UTC."""
    berlin = NOW.astimezone(timezone(timedelta(hours=1)))
    view = _create(store, {}, at=berlin)
    assert view["created_at"] == "2026-01-01T09:00:00+00:00"
    with store.read() as conn:
        assert rec.get(conn, "acme", "ticket", str(view["id"]))["created_at"] == "2026-01-01T09:00:00+00:00"


def test_update_merges_top_level_keys(store: Store) -> None:
    """An update replaces the keys it names (nested objects whole), keeps the others, and returns before and after."""
    view = _create(store, {"title": "T", "status": "open", "owner": {"id": "u1", "team": "a"}})
    with store.write() as conn:
        before, after = rec.update(conn, "acme", "ticket", str(view["id"]),
                                   {"status": "closed", "owner": {"id": "u2"}, "note": None}, NOW + HOUR)
    assert before == view
    assert after["title"] == "T" and after["status"] == "closed" and after["note"] is None
    assert after["owner"] == {"id": "u2"}
    assert after["updated_at"] == after["last_activity_at"] == (NOW + HOUR).isoformat()
    assert after["created_at"] == view["created_at"]
    with store.read() as conn:
        assert rec.get(conn, "acme", "ticket", str(view["id"])) == after


def test_update_without_touching_activity(store: Store) -> None:
    """With touch_activity=False an update moves updated_at but not last_activity_at."""
    view = _create(store, {"stage": "qualified"})
    with store.write() as conn:
        _, after = rec.update(conn, "acme", "ticket", str(view["id"]), {"stale": True}, NOW + HOUR,
                              touch_activity=False)
    assert after["updated_at"] == (NOW + HOUR).isoformat()
    assert after["last_activity_at"] == NOW.isoformat()


def test_delete_is_soft_and_hides_the_record(store: Store) -> None:
    """A deleted record's last view is returned; afterwards get, update and list no longer see it."""
    keep = _create(store, {"title": "keep"})
    gone = _create(store, {"title": "gone"})
    with store.write() as conn:
        assert rec.delete(conn, "acme", "ticket", str(gone["id"]), NOW + HOUR) == gone
    with store.read() as conn:
        with pytest.raises(NotFoundError, match=f"ticket:{gone['id']} does not exist in account 'acme'"):
            rec.get(conn, "acme", "ticket", str(gone["id"]))
        assert rec.list_records(conn, "acme", "ticket") == [keep]
    with pytest.raises(NotFoundError), store.write() as conn:
        rec.update(conn, "acme", "ticket", str(gone["id"]), {"title": "x"}, NOW)
    with pytest.raises(NotFoundError), store.write() as conn:
        rec.delete(conn, "acme", "ticket", str(gone["id"]), NOW)


def test_list_is_newest_first_per_account_and_type(store: Store) -> None:
    """list_records returns one account's records of one type, highest id first, at most ``limit``."""
    first, second = _create(store, {"n": 1}), _create(store, {"n": 2})
    _create(store, {"n": 3}, type_="lead")
    _create(store, {"n": 4}, account="globex")
    with store.read() as conn:
        assert rec.list_records(conn, "acme", "ticket") == [second, first]
        assert rec.list_records(conn, "acme", "ticket", limit=1) == [second]
        with pytest.raises(UsageError, match="limit must be at least 1"):
            rec.list_records(conn, "acme", "ticket", limit=0)


def test_custom_object_types_are_record_types(store: Store) -> None:
    """object_type:<id> is a record type; its refs split at the last colon."""
    view = _create(store, {"title": "Refund"}, type_="object_type:ot_billing_case")
    assert view["type"] == "object_type:ot_billing_case"
    assert rec.parse_record_ref(f"object_type:ot_billing_case:{view['id']}") == (
        "object_type:ot_billing_case", view["id"])


def test_other_type_or_account_is_not_found(store: Store) -> None:
    """A record is found only under its own type and account; non-numeric ids are simply not found."""
    view = _create(store, {"title": "T"})
    with store.read() as conn:
        with pytest.raises(NotFoundError, match=f"record lead:{view['id']} does not exist"):
            rec.get(conn, "acme", "lead", str(view["id"]))
        with pytest.raises(NotFoundError, match="account 'globex'"):
            rec.get(conn, "globex", "ticket", str(view["id"]))
        for bad in ("abc", "-1", "²", "99999999999999999999"):
            with pytest.raises(NotFoundError):
                rec.get(conn, "acme", "ticket", bad)


@pytest.mark.parametrize(("data", "message"), [
    (["not", "a", "dict"], "must be a JSON object"),
    ({"id": 7}, "may not set 'id'"),
    ({"type": "lead", "title": "x"}, "may not set 'type'"),
    ({"updated_at": "2026-01-01"}, "may not set 'updated_at'"),
    ({"when": datetime(2026, 1, 1)}, "is not JSON"),
    ({"score": float("nan")}, "is not JSON"),
])
def test_bad_data_is_refused(store: Store, data: object, message: str) -> None:
    """Record data must be a JSON object without the fields the store sets."""
    with pytest.raises(UsageError, match=message), store.write() as conn:
        rec.create(conn, "acme", "ticket", data, NOW)  # type: ignore[arg-type]


def test_bad_types_are_refused(store: Store) -> None:
    """Only built-in entities and object_type:<id> (short enough for the column) are record types."""
    with pytest.raises(UsageError, match="'tickets' is not a record type"), store.write() as conn:
        rec.create(conn, "acme", "tickets", {}, NOW)
    with pytest.raises(UsageError, match="longer than 32 characters"), store.write() as conn:
        rec.create(conn, "acme", "object_type:" + "x" * 30, {}, NOW)


@pytest.mark.parametrize("ref", ["ticket", "ticket:", "ticket:abc", ":42", "tickets:42", "object_type:42"])
def test_parse_record_ref_refuses_bad_input(ref: str) -> None:
    """A record reference is <type>:<digits> with a known type."""
    with pytest.raises(UsageError):
        rec.parse_record_ref(ref)


def test_parse_record_ref() -> None:
    """parse_record_ref splits a built-in type from the id."""
    assert rec.parse_record_ref("ticket:42") == ("ticket", "42")


def _quiet(store: Store, workflow_id: int, at: datetime, type_: str = "lead") -> list[str]:
    with store.read() as conn:
        return [str(v["id"]) for v in rec.quiet_records(conn, "acme", type_, at, workflow_id)]


def test_inactivity_fires_once_per_quiet_spell(store: Store) -> None:
    """A quiet record is found until marked; new activity starts a new spell that is found again."""
    wid = _workflow(store)
    lead = _create(store, {"stage": "qualified"}, type_="lead")
    busy = _create(store, {"stage": "qualified"}, type_="lead", at=NOW + 2 * HOUR)
    _create(store, {"stage": "qualified"}, type_="deal")
    lead_id = str(lead["id"])
    assert _quiet(store, wid, NOW - HOUR) == []
    assert _quiet(store, wid, NOW + HOUR) == [lead_id]  # busy is newer than the cut-off
    with store.write() as conn:
        rec.mark_fired(conn, wid, lead_id, str(lead["last_activity_at"]))
    assert _quiet(store, wid, NOW + 5 * HOUR) == [str(busy["id"])]  # fired once; busy is quiet now
    with store.write() as conn:
        _, after = rec.update(conn, "acme", "lead", lead_id, {"note": "called"}, NOW + 6 * HOUR)
    assert _quiet(store, wid, NOW + 5 * HOUR) == [str(busy["id"])]  # active at 6h: not quiet since 5h
    assert _quiet(store, wid, NOW + 6 * HOUR) == [str(busy["id"]), lead_id]  # a new spell
    with store.write() as conn:
        rec.mark_fired(conn, wid, int(lead_id), datetime.fromisoformat(str(after["last_activity_at"])))
    assert _quiet(store, wid, NOW + 9 * HOUR) == [str(busy["id"])]


def test_marks_are_per_workflow_and_ignore_silent_updates(store: Store) -> None:
    """One workflow's mark does not hide the record from another; an update without activity keeps the spell."""
    first, second = _workflow(store, "first"), _workflow(store, "second")
    lead = _create(store, {}, type_="lead")
    with store.write() as conn:
        rec.mark_fired(conn, first, str(lead["id"]), NOW)
        rec.update(conn, "acme", "lead", str(lead["id"]), {"stale": True}, NOW + HOUR, touch_activity=False)
    assert _quiet(store, first, NOW + 2 * HOUR) == []
    assert _quiet(store, second, NOW + 2 * HOUR) == [str(lead["id"])]


def test_deleted_records_are_never_quiet(store: Store) -> None:
    """A soft-deleted record does not fire inactivity triggers."""
    wid = _workflow(store)
    lead = _create(store, {}, type_="lead")
    with store.write() as conn:
        rec.delete(conn, "acme", "lead", str(lead["id"]), NOW)
    assert _quiet(store, wid, NOW + HOUR) == []
