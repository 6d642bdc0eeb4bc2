"""Writes on the driver's cursor (controller.store.direct) store exactly what SQLAlchemy's execute stores, on
SQLite and PostgreSQL; and the cap's quick bound never keeps a value whose JSON is over the limit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from enginekit import Kit, kit
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import bindparam, cast, insert, select, update
from sqlalchemy.types import Text

from controller.engine.caps import _surely_fits, capped
from controller.store.direct import executemany
from controller.store.tables import execution_steps

WF = ("apiVersion: workflows/v1\nkind: Workflow\nmetadata:\n  name: x\nspec:\n"
      "  trigger: {type: manual, entities: [ticket]}\n  actions:\n    - {id: a, type: set, vars: {n: 1}}\n")
AT = datetime(2026, 12, 2, 6, 7, 8, 90_000, tzinfo=UTC)


@pytest.fixture
def k(tmp_path: Path, store_url: str) -> Iterator[Kit]:
    with kit(tmp_path, store_url) as made:
        made.deploy({"workflows.d/acme/x.yaml": WF})
        yield made


def step(execution_id: int, action_id: str, **values: Any) -> dict[str, Any]:
    row = {"execution_id": execution_id, "seq": 1, "action_id": action_id, "type": "set", "status": "succeeded",
           "input": {"vars": {"n": "é \u001f"}}, "output": None, "error": None, "attempts": 1, "started_at": AT,
           "finished_at": AT.astimezone(timezone(timedelta(hours=2))), "wait_seconds": None, "idempotency_key": None,
           "attempt_log": [], "failure": None}
    return {**row, **values}


def stored(k: Kit, execution_id: int) -> dict[str, tuple[dict[str, Any], tuple[Any, ...]]]:
    """Each step row (but its id and action id) as read back, and as the text the database holds."""
    s = execution_steps.c
    columns = [c for c in execution_steps.c if c.name not in ("id", "action_id")]
    with k.store.read() as conn:
        typed = conn.execute(select(s.action_id, *columns).where(s.execution_id == execution_id)).all()
        text = conn.execute(select(s.action_id, *(cast(c, Text) for c in columns))
                            .where(s.execution_id == execution_id)).all()
    return {row[0]: (dict(zip([c.name for c in columns], row[1:])), tuple(t[1:])) for row, t in zip(typed, text)}


def test_rows_on_the_cursor_are_stored_as_execute_stores_them(k: Kit) -> None:
    """The same insert and update through executemany and through conn.execute give equal rows, byte for byte
    (JSON, text with escapes, timestamps in another zone, NULL and JSON null)."""
    execution_id = k.engine.start("acme/x", {"type": "manual"})
    with k.store.tx() as conn:
        executemany(conn, insert(execution_steps), [step(execution_id, "direct"), step(execution_id, "direct-2")])
        conn.execute(insert(execution_steps), [step(execution_id, "execute"), step(execution_id, "execute-2")])
    change = update(execution_steps).where(execution_steps.c.action_id == bindparam("b_action"))
    with k.store.tx() as conn:
        later = {"output": {"list": [1, 2.5, True, None]}, "finished_at": AT + timedelta(seconds=1), "error": "x"}
        executemany(conn, change, [{**later, "b_action": "direct"}])
        conn.execute(change, [{**later, "b_action": "execute"}])
    rows = stored(k, execution_id)
    assert rows["direct"] == rows["execute"] and rows["direct-2"] == rows["execute-2"]
    assert rows["direct"][0]["input"] == {"vars": {"n": "é \u001f"}}
    assert rows["direct"][0]["finished_at"] == AT + timedelta(seconds=1)


def test_a_row_without_a_column_sqlalchemy_would_default_is_refused(k: Kit) -> None:
    """executemany fills in no defaults: a missing column is named, nothing is written."""
    execution_id = k.engine.start("acme/x", {"type": "manual"})
    row = step(execution_id, "a")
    del row["attempt_log"]
    with pytest.raises(ValueError, match="attempt_log"), k.store.tx() as conn:
        executemany(conn, insert(execution_steps), [row])


json_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30)


@given(json_data, st.integers(min_value=0, max_value=400))
def test_the_quick_bound_never_keeps_a_value_over_the_limit(value: Any, limit: int) -> None:
    """Whenever the bound says a value fits, its JSON does fit; and capping keeps exactly the values that fit."""
    size = len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"))
    if _surely_fits(value, limit):
        assert size <= limit
    if size <= limit:
        assert capped(value, limit) is value
