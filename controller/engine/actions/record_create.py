"""``record.create``: a new record of a built-in entity type or a custom object type."""

from __future__ import annotations

from typing import Any

from controller.engine.actions.base import ActionContext, Done, Outcome
from controller.errors import ExecutionError
from controller.model import ENTITY_TYPES

_OBJECT_TYPE = "object_type:"


def run(inputs: dict[str, Any], ctx: ActionContext) -> Outcome:
    """Create the record; the output is the record as stored (``{"id", "type", ...fields}``)."""
    entity = resolve_entity(inputs.get("entity"), ctx)
    return Done(ctx.effects.create_record(ctx.account, entity, fields(inputs)))


def resolve_entity(value: Any, ctx: ActionContext) -> str:
    """The record type to write: a built-in entity, or the id of an active ``object_type:<id>``."""
    entity = "" if value is None else str(value)
    if entity in ENTITY_TYPES:
        return entity
    if entity.startswith(_OBJECT_TYPE):
        return ctx.lookup(entity, "object_type").id
    raise ExecutionError(f"entity {entity!r} is not one of {', '.join(ENTITY_TYPES)} or object_type:<id>")


def fields(inputs: dict[str, Any]) -> dict[str, Any]:
    """The ``set`` map of the action, checked to be a map."""
    values = inputs.get("set")
    if not isinstance(values, dict):
        raise ExecutionError(f"set must be a map of field names to values, got {type(values).__name__}")
    return values
