"""Starting an execution on request (`wfctl run`, the API's manual run) and waiting for its end."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from controller.engine import queue
from controller.errors import UsageError
from controller.store import records as record_store
from controller.store import views

if TYPE_CHECKING:
    from controller.engine.runtime import Engine


def start_now(engine: Engine, key: str, *, record: tuple[str, str] | None = None, payload: Any = None) -> int:
    """Queue an execution of ``key`` on a record (``("ticket", "42")``) and/or with a payload."""
    account = key.split("/", 1)[0]
    with engine.store.tx() as conn:
        content = views.current_definition(conn, key) or {}
        trigger_spec = content.get("spec", {}).get("trigger", {})
        kind = trigger_spec.get("type") if trigger_spec.get("type") in ("manual", "webhook") else "manual"
        # A run on request has no caller: an empty input lets `trigger.input.x | default(…)` work.
        trigger: dict[str, Any] = {"type": kind, "source": "run", "input": {}}
        ref = None
        if record is not None:
            entity, record_id = record
            allowed = trigger_spec.get("entities")
            if trigger_spec.get("type") == "manual" and allowed and entity not in allowed:
                raise UsageError(f"{key} runs on {', '.join(allowed)} records, not {entity}")
            trigger["record"] = record_store.get(conn, account, entity, record_id)
            ref = {"type": entity, "id": record_id}
        if payload is not None:
            trigger["body"] = payload
        return engine.start(key, trigger, ref, conn=conn)


def run_to_end(engine: Engine, execution_id: int, *, poll: float = 0.2) -> dict[str, Any]:
    """Work the queue here until the execution reaches a final state; returns its trace."""
    while True:
        engine.run_pending()
        with engine.store.read() as conn:
            data = views.execution(conn, execution_id)
        if data["status"] in queue.FINAL:
            return data
        time.sleep(poll)


