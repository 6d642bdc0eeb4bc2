"""Pydantic validation errors as located, human messages: ``(loc, message)``.

``loc`` is a path into the raw YAML data (mapping keys and list indices), so a caller holding the
round-trip-loaded document can turn it into ``line:column``. Pydantic's locations also hold parts
that are not in the data (the tag of a tagged union: ``('spec', 'actions', 2, 'wait', 'duration')``);
they are found by walking the model's own types alongside the location, never by guessing from the
text, and dropped.

Conventions a caller can rely on:

* an unknown key points at the key itself; a missing key points at the mapping that lacks it;
* an unknown or missing ``type`` points at the ``type`` key or at the mapping that lacks it;
* an error found by a whole-model rule (duplicate id, cron below the floor, json with body) points
  at the most specific key (``spec.actions[3].then[0].id``, ``spec.trigger.cron``);
* a location may end at a key that is missing from the data; callers fall back to the nearest
  existing parent.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from controller.model.base import LOCATED_ERROR
from controller.model.paths import Loc, field_path
from controller.model.triggers import TRIGGER_TYPES
from controller.model.workflow import Workflow

__all__ = ["field_path", "load_workflow", "validation_issues"]

Issue = tuple[Loc, str]

_KEY = "[key]"  # pydantic's loc part for an invalid mapping key


def load_workflow(data: Any) -> Workflow:
    """Validate raw YAML data as a workflow; raises ``pydantic.ValidationError``."""
    return Workflow.model_validate(data)


def validation_issues(exc: ValidationError) -> list[Issue]:
    """Every error of ``exc`` as ``(loc, message)``, in pydantic's order, without repeats."""
    issues: list[Issue] = []
    for error in exc.errors(include_url=False):
        issue = _issue(error)
        if issue not in issues:
            issues.append(issue)
    return issues


def _issue(error: ErrorDetails) -> Issue:
    loc, shapes = _resolve(tuple(error["loc"]))
    kind, ctx, value = error["type"], error.get("ctx") or {}, error["input"]
    if kind == LOCATED_ERROR:
        return (*loc, *ctx["wfc_path"]), str(ctx["wfc_message"])
    if kind in ("value_error", "assertion_error"):
        return loc, str(ctx["error"])
    if kind == "extra_forbidden":
        return loc, _unknown_key(str(loc[-1]), shapes[-2])
    if kind == "missing":
        return loc[:-1], f"missing required key {loc[-1]!r}"
    if kind == "union_tag_invalid":
        return (*loc, "type"), _unknown_type(value, shapes[-1])
    if kind == "union_tag_not_found":
        _, tags = _union_noun(shapes[-1])
        return loc, f"missing 'type' (use one of: {', '.join(tags)})"
    if kind == "literal_error":
        return loc, _not_allowed(loc, value, shapes[-1], str(ctx.get("expected", "")))
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return loc, f"expected a mapping (key: value), got {describe(value)}"
    if kind == "string_type" and loc and loc[-1] == _KEY:
        return loc[:-1], f"key {value!r} must be a string (quote it)"
    return loc, _plain(kind, ctx, value, error["msg"])


# -- messages ----------------------------------------------------------------------------------


def _unknown_key(key: str, parent: Any) -> str:
    if not (isinstance(parent, type) and issubclass(parent, BaseModel)):
        return f"unknown key {key!r}"
    allowed = sorted(field.alias or name for name, field in parent.model_fields.items())
    message = f"unknown key {key!r} (allowed: {', '.join(allowed)})"
    close = difflib.get_close_matches(key, allowed, n=1)
    return f"{message}; did you mean {close[0]!r}?" if close else message


def _union_noun(shape: Any) -> tuple[str, list[str]]:
    tags = [_tag(member) for member in _models_of(shape)]
    return ("trigger" if set(tags) == set(TRIGGER_TYPES) else "action"), tags


def _unknown_type(value: Any, shape: Any) -> str:
    noun, tags = _union_noun(shape)
    tag = value.get("type") if isinstance(value, dict) else value
    message = f"unknown {noun} type {tag!r} (use one of: {', '.join(tags)})"
    close = difflib.get_close_matches(tag, tags, n=1) if isinstance(tag, str) else []
    return f"{message}; did you mean {close[0]!r}?" if close else message


def _not_allowed(loc: Loc, value: Any, shape: Any, expected: str) -> str:
    allowed = [str(a) for a in typing.get_args(shape)] if typing.get_origin(shape) is Literal else []
    if len(allowed) == 1:
        key = next((part for part in reversed(loc) if isinstance(part, str)), "the value")
        return f"{key} must be {allowed[0]!r} (got {value!r})"
    return f"{value!r} is not one of: {', '.join(allowed) if allowed else expected}"


_PLAIN = {
    "string_type": "expected a string, got {got}",
    "int_type": "expected a whole number, got {got}",
    "int_from_float": "expected a whole number, got {got}",
    "float_type": "expected a number, got {got}",
    "bool_type": "expected true or false, got {got}",
    "list_type": "expected a list, got {got}",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "greater_than": "must be more than {gt}",
    "less_than": "must be less than {lt}",
}


def _plain(kind: str, ctx: dict[str, Any], value: Any, fallback: str) -> str:
    if kind in _PLAIN:
        return _PLAIN[kind].format(got=describe(value), **ctx)
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"needs at least {least} items"
    if kind == "too_long":
        return f"has too many items (at most {ctx.get('max_length')})"
    return fallback


def describe(value: Any) -> str:
    """What a value is, for "expected X, got ..." messages."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


# -- locations ---------------------------------------------------------------------------------


def _resolve(raw: Loc) -> tuple[Loc, list[Any]]:
    """``raw`` without the parts that are not in the data, and the type at each prefix.

    ``shapes[i]`` is the (unwrapped) type at ``loc[:i]``; None once the walk leaves the model.
    """
    loc: list[str | int] = []
    shapes: list[Any] = [Workflow]
    for part in raw:
        shape = shapes[-1]
        models = _models_of(shape)
        if len(models) > 1 and isinstance(part, str) and part in {_tag(m) for m in models}:
            shapes[-1] = next(m for m in models if _tag(m) == part)  # a tag: drop it, narrow
            continue
        loc.append(part)
        shapes.append(_step(shape, part))
    return tuple(loc), shapes


def _step(shape: Any, part: str | int) -> Any:
    if isinstance(shape, type) and issubclass(shape, BaseModel):
        field = next((f for n, f in shape.model_fields.items() if (f.alias or n) == part), None)
        return _unwrap(field.rebuild_annotation()) if field else None
    origin, args = typing.get_origin(shape), typing.get_args(shape)
    if origin is list and isinstance(part, int):
        return _unwrap(args[0])
    if origin is dict and part != _KEY:
        return _unwrap(args[1])
    if origin in (typing.Union, types.UnionType) and isinstance(part, int):
        lists = [a for a in args if typing.get_origin(a) is list]
        return _unwrap(typing.get_args(lists[0])[0]) if lists else None
    return None


def _unwrap(annotation: Any) -> Any:
    """The type under ``Annotated[...]`` and ``X | None``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _models_of(shape: Any) -> list[type[BaseModel]]:
    """The members of a union of models (a tagged union), else []."""
    if typing.get_origin(shape) not in (typing.Union, types.UnionType):
        return []
    members = typing.get_args(shape)
    if all(isinstance(m, type) and issubclass(m, BaseModel) and "type" in m.model_fields for m in members):
        return list(members)
    return []


def _tag(model: type[BaseModel]) -> str:
    tag: str = typing.get_args(model.model_fields["type"].annotation)[0]
    return tag
