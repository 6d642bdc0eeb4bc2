"""``record.update``: merge the ``set`` fields into an existing record."""

from __future__ import annotations

from typing import Any

from controller.engine.actions.base import ActionContext, Done, Outcome
from controller.engine.actions.record_create import fields, resolve_entity
from controller.errors import ExecutionError


def run(inputs: dict[str, Any], ctx: ActionContext) -> Outcome:
    """Update the record; the output is the record after the change."""
    entity = resolve_entity(inputs.get("entity"), ctx)
    record_id = "" if inputs.get("record_id") is None else str(inputs["record_id"]).strip()
    if not record_id:
        raise ExecutionError("record_id is empty; give the id of the record to change, e.g. {{ record.id }}")
    return Done(ctx.effects.update_record(ctx.account, entity, record_id, fields(inputs)))
