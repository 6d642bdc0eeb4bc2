"""The record types a workflow can watch, run on, create or update.

Triggers name only the built-in entity types; ``record.create`` and ``record.update`` also take a
custom object type of the account (``object_type:<id>``), which is an account reference.
"""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import PlainValidator, WithJsonSchema

from controller.model.refs import RefField

EntityType = Literal["issue", "ticket", "task", "lead", "deal", "opportunity", "contact"]
"""A built-in record type."""

ENTITY_TYPES: tuple[str, ...] = typing.get_args(EntityType)

_OBJECT_TYPE = RefField("object_type", optional=True)


def _validate_record_entity(value: object) -> str:
    if isinstance(value, str):
        if value in ENTITY_TYPES:
            return value
        if value.startswith("object_type:"):
            if _OBJECT_TYPE.ref_id(value) is None:
                raise ValueError(_OBJECT_TYPE.message(value))
            return value
    raise ValueError(
        f"{value!r} is not an entity (use one of: {', '.join(ENTITY_TYPES)}, or object_type:<id>)"
    )


RecordEntity = Annotated[
    str,
    _OBJECT_TYPE,
    PlainValidator(_validate_record_entity, json_schema_input_type=str),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "enum": list(ENTITY_TYPES)}, RefField("object_type").schema()]}
    ),
]
"""A built-in entity type or ``object_type:<id>`` (a custom object type of the account)."""
