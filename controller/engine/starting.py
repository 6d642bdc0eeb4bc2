"""Starting an execution on request (`wfctl run`, the API's manual run) and waiting for its end."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from controller.engine.admission import Request
from controller.engine.triggers import manual
from controller.errors import UsageError
from controller.model.statuses import FINAL
from controller.store import records as record_store
from controller.store import views

if TYPE_CHECKING:
    from controller.engine.runtime import Engine


def start_now(engine: Engine, key: str, *, record: tuple[str, str] | None = None, payload: Any = None) -> int:
    """Admit an execution of ``key`` on a record (``("ticket", "42")``) and/or with a payload; its id.

    A verdict that is not a start raises its error after the decision is committed (a rate-limit
    drop stays counted): RateLimited, GuardError or NotFoundError.
    """
    account = key.split("/", 1)[0]
    with engine.store.tx() as conn:
        content = views.current_definition(conn, key) or {}
        trigger_spec = content.get("spec", {}).get("trigger", {})
        kind = trigger_spec.get("type") if trigger_spec.get("type") in ("manual", "webhook") else "manual"
        data = None
        if record is not None:
            entity, record_id = record
            allowed = trigger_spec.get("entities")
            if trigger_spec.get("type") == "manual" and allowed and entity not in allowed:
                raise UsageError(f"{key} runs on {', '.join(allowed)} records, not {entity}")
            data = record_store.get(conn, account, entity, record_id)
        trigger = manual.on_request(kind, data, payload)
        ref = {"type": record[0], "id": record[1]} if record is not None else None
        verdict = engine.admission.admit(conn, Request(key, kind, trigger, ref))
    return verdict.execution()


def run_to_end(engine: Engine, execution_id: int, *, poll: float = 0.2) -> dict[str, Any]:
    """Work the queue here until the execution reaches a final state; returns its trace."""
    while True:
        engine.run_pending()
        with engine.store.read() as conn:
            data = views.execution(conn, execution_id)
        if data["status"] in FINAL:
            return data
        time.sleep(poll)
