"""Names: workflow names, action ids and ``workflow.call`` targets share one slug rule.

A name is what a file stem, a URL segment (``/hooks/<account>/<name>``) and a step id in templates
(``steps.<id>.output``) must all accept, hence lowercase letters, digits and ``-`` only.
"""

from __future__ import annotations

import re
from typing import Annotated, TypeGuard

from pydantic import PlainValidator, WithJsonSchema

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)
_RULE = "lowercase letters, digits and '-', at most 63 characters, starting with a letter or digit"


def is_name(value: object) -> TypeGuard[str]:
    """Whether ``value`` follows the slug rule (whole: ``$`` alone would let a trailing newline through)."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def _slug(what: str) -> PlainValidator:
    def validate(value: object) -> str:
        if is_name(value):
            return value
        raise ValueError(f"{value!r} is not a valid {what} (use {_RULE})")

    return PlainValidator(validate, json_schema_input_type=str)


def _schema(what: str) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "pattern": NAME_PATTERN, "maxLength": 63, "description": f"A {what}: {_RULE}"}
    )


Name = Annotated[str, _slug("name"), _schema("name")]
"""``metadata.name``: the file stem and the workflow's identity within its account."""

ActionId = Annotated[str, _slug("action id"), _schema("action id")]
"""An action's ``id``, unique within its workflow (``steps.<id>.output`` in templates)."""

WorkflowName = Annotated[str, _slug("workflow name"), _schema("workflow name")]
"""The target of ``workflow.call``: the name of a workflow of the same account."""
