"""Template strings (``{{ record.title }}``): syntax checked at validation time, evaluated elsewhere.

Any string that contains ``{{`` must parse as a Jinja2 template; the engine evaluates it in a sandbox
later. Parsing is cached and skipped for strings without ``{{``, because this runs for every string
of every file when the controller loads a large repository; and a string of text and ``{{ ... }}``
blocks only is checked block by block, so the thousands of strings that share their expressions
(``{{ record.id }}``) share one parse of each.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Mapping
from typing import Annotated, Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment
from pydantic import AfterValidator, PlainValidator, WithJsonSchema

from controller.model.base import located

_SHOWN = 60  # characters of a template quoted in a message; bodies can be long
# The sandbox refuses them at run time too (controller.engine.templating): a loop calling itself
# escapes the count of loop iterations.
RECURSIVE_LOOP = "recursive loops are not allowed in workflow templates"


@functools.lru_cache(maxsize=1)
def _environment() -> SandboxedEnvironment:
    # Created on first use, not at import; parse() needs no loader or globals.
    return SandboxedEnvironment()


def _quote(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "\u2026")


def template_problem(text: str) -> str | None:
    """Why ``text`` is not a valid template, or None when it is (or holds no ``{{``)."""
    if "{{" not in text or _valid_by_blocks(text):
        return None
    return _parse_problem(text)


# A block with no brace inside, ``{{ record.id | default('') }}``; the first "}}" closes it.
_BLOCK = re.compile(r"\{\{([^{}]*)\}\}")


def _valid_by_blocks(text: str) -> bool:
    """Whether ``text`` is plain text (no "{" at all) and blocks that are each a valid template alone.

    Then the whole is valid too: Jinja's lexer sees the text as data (only "{{", "{%" and "{#" open
    anything) and each block as alone, and its parser reads each block by itself. False decides
    nothing: the whole text is parsed, for the exact message.
    """
    end = 0
    for block in _BLOCK.finditer(text):
        if "{" in text[end:block.start()] or not _block_valid(block.group(1)):
            return False
        end = block.end()
    return "{" not in text[end:]


@functools.lru_cache(maxsize=8192)
def _block_valid(expression: str) -> bool:
    return _parse_problem("{{" + expression + "}}") is None


@functools.lru_cache(maxsize=8192)
def _parse_problem(text: str) -> str | None:
    try:
        tree = _environment().parse(text)
    except TemplateSyntaxError as error:
        where = f" (line {error.lineno} of the template)" if "\n" in text.strip() else ""
        return f"{_quote(text)} is not a valid template: {error.message}{where}"
    if any(loop.recursive for loop in tree.find_all(nodes.For)):
        return f"{_quote(text)} is not a valid template: {RECURSIVE_LOOP}"
    return None


def _check_text(value: str) -> str:
    problem = template_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _check_condition(value: str) -> str:
    if "{{" not in value:
        # Without braces the text is a constant, and a non-empty constant is always true.
        raise ValueError(f'{_quote(value)} is not a template (write the condition as "{{{{ ... }}}}")')
    return _check_text(value)


def _clean_data(value: Any, path: tuple[str | int, ...] = ()) -> Any:
    """``value`` as JSON data: templates checked, dates as ISO text, anything else non-JSON refused."""
    if isinstance(value, str):
        problem = template_problem(value)
        if problem:
            raise located(problem, *path)
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        cleaned = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise located(f"key {key!r} must be a string (quote it)", *path, str(key))
            cleaned[key] = _clean_data(item, (*path, key))
        return cleaned
    if isinstance(value, list):
        return [_clean_data(item, (*path, index)) for index, item in enumerate(value)]
    if isinstance(value, datetime.date):
        # An unquoted 2026-01-05 in YAML is a date; JSON has no dates, so keep the text.
        return value.isoformat()
    raise located(
        f"{type(value).__name__} values are not allowed here (use strings, numbers, lists, maps)", *path
    )


def _clean_mapping(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        # ValueError, not TypeError: pydantic turns only ValueError into a validation error.
        raise ValueError(f"expected a mapping (key: value), got {type(value).__name__}")  # noqa: TRY004
    cleaned: dict[str, Any] = _clean_data(value)
    return cleaned


Text = Annotated[str, AfterValidator(_check_text)]
"""A string that may contain ``{{ ... }}`` placeholders."""

Condition = Annotated[
    str,
    AfterValidator(_check_condition),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"\{\{",
            "description": "A template, e.g. {{ record.priority == 'urgent' }}",
        }
    ),
]
"""A template whose value decides something (``when``, ``condition``); it must contain ``{{``."""

JsonData = Annotated[Any, PlainValidator(_clean_data), WithJsonSchema({})]
"""Any JSON value; strings in it may be templates."""

JsonMapping = Annotated[dict[str, Any], PlainValidator(_clean_mapping, json_schema_input_type=dict[str, Any])]
"""A mapping of JSON values (``set``, ``input``, ``vars``); strings in it may be templates."""
