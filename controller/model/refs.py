"""Account references (``user:u_alice``, ``mailbox:mb_support``, ...) as typed fields.

A reference names something that lives in the account directory, not in git, so it is the part of a
workflow that export/import rebinds and dependency tracking watches. Every reference type carries a
:class:`RefField` marker in its ``Annotated`` metadata and ``"x-wfc-ref": "<kind>"`` in its JSON
schema; :func:`iter_refs` finds references by walking the model's field annotations for that
marker, never by matching text.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, PlainValidator, WithJsonSchema

from controller.addresses import parsed as parsed_address
from controller.model.base import located
from controller.model.paths import Loc, field_path
from controller.model.templates import template_problem

REF_KINDS = ("user", "mailbox", "channel", "object_type")
REF_ID_PATTERN = r"[A-Za-z0-9_.-]+"


@dataclass(frozen=True)
class RefField:
    """Marks an annotated type as holding an account reference of ``kind``.

    With ``optional`` the field also takes other values (an e-mail address, a built-in entity) and a
    value is a reference only when it starts with ``<kind>:``.
    """

    kind: str
    optional: bool = False

    @property
    def pattern(self) -> str:
        """The JSON-schema pattern of a reference of this kind."""
        return f"^{self.kind}:{REF_ID_PATTERN}$"

    def ref_id(self, value: object) -> str | None:
        """The id in ``value`` if it is a well-formed reference of this kind, else None."""
        if isinstance(value, str) and re.match(self.pattern, value):
            return value.partition(":")[2]
        return None

    def message(self, value: object) -> str:
        """Why ``value`` is not a reference of this kind, saying the form to use."""
        noun = "an object type" if self.kind == "object_type" else f"a {self.kind}"
        return f"{value!r} is not {noun} reference (use {self.kind}:<id>)"

    def schema(self) -> dict[str, Any]:
        """The JSON schema of a reference of this kind, with the ``x-wfc-ref`` marker."""
        return {"type": "string", "pattern": self.pattern, "x-wfc-ref": self.kind}


def _strict_ref(marker: RefField) -> PlainValidator:
    def validate(value: object) -> str:
        if marker.ref_id(value) is None:
            raise ValueError(marker.message(value))
        return value  # type: ignore[return-value]  # ref_id() returned an id, so value is a str

    return PlainValidator(validate, json_schema_input_type=str)


_USER = RefField("user")
_MAILBOX = RefField("mailbox")
_CHANNEL = RefField("channel")
_OBJECT_TYPE = RefField("object_type")

UserRef = Annotated[str, _USER, _strict_ref(_USER), WithJsonSchema(_USER.schema())]
"""``user:<id>``: a user of the account."""
MailboxRef = Annotated[str, _MAILBOX, _strict_ref(_MAILBOX), WithJsonSchema(_MAILBOX.schema())]
"""``mailbox:<id>``: a shared mailbox of the account (sending and inbound mail)."""
ChannelRef = Annotated[str, _CHANNEL, _strict_ref(_CHANNEL), WithJsonSchema(_CHANNEL.schema())]
"""``channel:<id>``: a chat channel of the account."""
ObjectTypeRef = Annotated[str, _OBJECT_TYPE, _strict_ref(_OBJECT_TYPE), WithJsonSchema(_OBJECT_TYPE.schema())]
"""``object_type:<id>``: a custom object type of the account."""


def _recipient_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"expected an e-mail address, a template or user:<id>, got {type(value).__name__}"
    if value.startswith("user:"):
        return None if _USER.ref_id(value) else _USER.message(value)
    if "{{" in value:
        return template_problem(value)
    if parsed_address(value) is not None:
        return None
    return f"{value!r} is not a recipient (use an e-mail address, a template or user:<id>)"


def _validate_recipients(value: object) -> str | list[str]:
    if isinstance(value, list):
        if not value:
            raise ValueError("the list of recipients is empty (give at least one)")
        for index, item in enumerate(value):
            problem = _recipient_problem(item)
            if problem:
                raise located(problem, index)
        return value
    problem = _recipient_problem(value)
    if problem:
        raise ValueError(problem)
    return value  # type: ignore[return-value]  # _recipient_problem() accepts only strings


_RECIPIENT_SCHEMA: dict[str, Any] = {
    "anyOf": [_USER.schema(), {"type": "string", "description": "An e-mail address or a template"}]
}
Recipients = Annotated[
    str | list[str],
    RefField("user", optional=True),
    PlainValidator(_validate_recipients, json_schema_input_type=str | list[str]),
    WithJsonSchema(
        {"anyOf": [_RECIPIENT_SCHEMA, {"type": "array", "items": _RECIPIENT_SCHEMA, "minItems": 1}]}
    ),
]
"""``to``/``cc``: one recipient or a list; each an address, a template or ``user:<id>``."""


def iter_refs(model: BaseModel) -> list[tuple[str, str, str]]:
    """Every account reference in ``model`` as ``(field_path, kind, id)``, in field order.

    ``field_path`` uses the YAML key names (``spec.actions[0].to[1]``), like error messages do.
    """
    found: list[tuple[str, str, str]] = []
    _walk_model(model, (), found)
    return found


def _walk_model(model: BaseModel, loc: Loc, found: list[tuple[str, str, str]]) -> None:
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if value is not None:
            _walk(field.rebuild_annotation(), value, (*loc, field.alias or name), found)


def _walk(annotation: Any, value: Any, loc: Loc, found: list[tuple[str, str, str]]) -> None:
    if isinstance(value, BaseModel):
        _walk_model(value, loc, found)
        return
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        marker = next((m for m in annotation.__metadata__ if isinstance(m, RefField)), None)
        if marker is None:
            _walk(args[0], value, loc, found)
        else:
            _collect(marker, value, loc, found)
    elif origin is list and isinstance(value, list):
        for index, item in enumerate(value):
            _walk(args[0], item, (*loc, index), found)
    elif origin is dict and isinstance(value, dict):
        for key, item in value.items():
            _walk(args[1], item, (*loc, key), found)
    elif origin in (typing.Union, types.UnionType):
        # Only Optional[...] and unions of models occur here; models were handled above.
        for member in args:
            if member is not type(None):
                _walk(member, value, loc, found)


def _collect(marker: RefField, value: Any, loc: Loc, found: list[tuple[str, str, str]]) -> None:
    # A marker applies to a string, or to each string of a list (``to: [a, b]``).
    items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
    for index, item in items:
        ref_id = marker.ref_id(item)
        if ref_id is not None:
            place = loc if index is None else (*loc, index)
            found.append((field_path(place), marker.kind, ref_id))
