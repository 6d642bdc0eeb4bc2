"""Small YAML (or JSON) files read with every problem at ``path:line:col``: the directory, the configuration.

Parsed with the fast safe loader; only when pydantic refuses the content is the text parsed again with
the round-trip loader, to place each problem (as the workflow loader does).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from controller.errors import DefinitionError, Problem
from controller.model.base import LOCATED_ERROR
from controller.model.issues import describe
from controller.model.paths import Loc, field_path, node_position

UnknownKey = Callable[[Loc], str]


def parse(text: str, path: str) -> Any:
    """The data in ``text`` (``.json`` files as JSON, the rest as YAML); DefinitionError on a syntax error."""
    if path.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise DefinitionError([Problem(path, e.lineno, e.colno, f"JSON syntax error: {e.msg}")]) from None
    try:
        return YAML(typ="safe", pure=False).load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise DefinitionError([Problem(path, line, col, f"YAML syntax error: {e.problem or e}")]) from None
    except YAMLError as e:
        raise DefinitionError([Problem(path, 1, 1, f"YAML error: {e}")]) from None


def problems(path: str, text: str, error: ValidationError, unknown_key: UnknownKey | None = None) -> list[Problem]:
    """Each of pydantic's errors as a located problem with a plain message."""
    return locate(path, text, [issue(err, unknown_key) for err in error.errors(include_url=False)])


def locate(path: str, text: str, issues: list[tuple[Loc, str]]) -> list[Problem]:
    try:
        tree: Any = YAML().load(text)  # round-trip: keeps .lc positions (JSON is YAML too)
    except YAMLError:
        tree = None
    found: list[Problem] = []
    for loc, message in issues:
        line, col = node_position(tree, loc)
        problem = Problem(path, line, col, message, field_path(loc))
        if problem not in found:
            found.append(problem)
    return found


def issue(error: ErrorDetails, unknown_key: UnknownKey | None = None) -> tuple[Loc, str]:
    loc, kind, ctx, value = tuple(error["loc"]), error["type"], error.get("ctx") or {}, error["input"]
    if kind == LOCATED_ERROR:
        return (*loc, *ctx["wfc_path"]), str(ctx["wfc_message"])
    if kind in ("value_error", "assertion_error"):
        return loc, str(ctx["error"])
    if kind == "extra_forbidden":
        return loc, unknown_key(loc) if unknown_key else f"unknown key {str(loc[-1])!r}"
    if kind == "missing":
        return loc[:-1], f"missing required key {loc[-1]!r}"
    if kind == "literal_error":
        return loc, f"{value!r} is not one of: {ctx.get('expected', '')}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return loc, f"expected a mapping (key: value), got {describe(value)}"
    if kind in PLAIN:
        return loc, PLAIN[kind].format(got=describe(value), **ctx)
    return loc, error["msg"]


PLAIN = {
    "string_type": "expected a string, got {got} (quote it)",
    "int_type": "expected a whole number, got {got}",
    "int_parsing": "not a whole number, got {got}",
    "bool_type": "expected true or false, got {got}",
    "bool_parsing": "not a boolean (use true or false), got {got}",
    "list_type": "expected a list, got {got}",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
}
