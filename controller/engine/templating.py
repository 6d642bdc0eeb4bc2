"""Evaluating ``{{ … }}`` placeholders: a sandboxed, strict Jinja2 over the execution's scope.

The scope the interpreter passes holds ``record``, ``trigger``, ``steps``, ``vars``, ``workflow``,
``account`` and ``now``. Only the *definition* is a template: whatever the scope holds is data and
comes out as it went in, so a record whose title is ``{{ 7*7 }}`` stays ``{{ 7*7 }}``.

A string that is exactly one placeholder yields the expression's native value (``{{ record.tags }}``
is a list, ``{{ record.amount > 10 }}`` a bool); any other string with ``{{`` renders to text. An
undefined name, a blocked attribute or any other failure raises :class:`TemplateError` naming the
placeholder.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import TemplateError as JinjaError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from controller.errors import TemplateError

_CACHE_SIZE = 8192  # distinct template texts kept compiled; a repository holds a few thousand at most
_SHOWN = 80  # characters of a long template quoted in a message
_MAX_POWER = 1000  # larger exponents can take the worker down: 10 ** 10 ** 9
_MAX_REPEAT = 1_000_000  # items or characters a ``*`` on a string or list may build
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}", re.DOTALL)

Expression = Callable[[Mapping[str, Any]], Any]


class _NotData(ValueError):
    """A placeholder gave a function, a class or another object that is not JSON data."""


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, plus limits on the two operators that can exhaust memory or CPU in one line."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > _MAX_POWER:
            raise SecurityError(f"the exponent {right} is too large (at most {_MAX_POWER})")
        if operator == "*" and _repeat_size(left, right) > _MAX_REPEAT:
            raise SecurityError(f"repeating a string or list to more than {_MAX_REPEAT} items is not allowed")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Records are data: ``record.items`` is the record's field "items" when it has one, not
        # dict.items (Jinja's default order tries the attribute first).
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _repeat_size(left: Any, right: Any) -> int:
    """How long ``left * right`` would be when it repeats a sequence, else 0."""
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(count, int) and not isinstance(count, bool):
            return len(seq) * count
    return 0


class Templates:
    """Compiles and evaluates templates; one instance serves every worker thread.

    Compiled templates are cached by their source text (``functools.lru_cache`` is thread-safe;
    two threads may compile the same text once each, which is harmless).
    """

    def __init__(self, cache_size: int = _CACHE_SIZE) -> None:
        # keep_trailing_newline: a YAML block body ends with a newline the author meant to keep.
        self._env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self._template: Callable[[str], Template] = functools.lru_cache(maxsize=cache_size)(
            self._env.from_string
        )
        self._expression: Callable[[str], Expression | None] = functools.lru_cache(maxsize=cache_size)(
            self._compile_expression
        )

    def render(self, value: Any, scope: Mapping[str, Any]) -> Any:
        """``value`` with every placeholder in its strings evaluated against ``scope``.

        Dicts (values only, keys are names and stay as written) and lists are walked; strings
        without ``{{`` and non-strings come back unchanged.
        """
        if isinstance(value, str):
            return self._render_text(value, scope) if "{{" in value else value
        if isinstance(value, dict):
            return {key: self.render(item, scope) for key, item in value.items()}
        if isinstance(value, list):
            return [self.render(item, scope) for item in value]
        return value

    def evaluate(self, text: str, scope: Mapping[str, Any]) -> Any:
        """The native value of a condition such as ``{{ record.status != 'closed' }}``.

        A condition that mixes text and placeholders renders to a string; judging its truth is the
        caller's business.
        """
        return self.render(text, scope)

    def _render_text(self, text: str, scope: Mapping[str, Any]) -> Any:
        try:
            expression = self._expression(text)
            if expression is not None:
                return _json_ready(expression(scope))
            return self._template(text).render(scope)
        except TemplateError:
            raise
        except Exception as error:  # every failure of a placeholder fails the step, named
            raise TemplateError(self._describe(text, scope, error)) from error

    def _compile_expression(self, text: str) -> Expression | None:
        """A callable giving the native value when ``text`` is one placeholder, else None."""
        source = _single_expression(self._env, text)
        if source is None:
            return None
        # undefined_to_none would turn a missing value into None silently; strict means an error.
        compiled = self._env.compile_expression(source, undefined_to_none=False)
        return lambda scope: compiled(scope)

    def _describe(self, text: str, scope: Mapping[str, Any], error: Exception) -> str:
        """``placeholder {{ x }}: why``, adding the template when the placeholder is only part of it."""
        reason = _reason(error)
        stripped = text.strip()
        if self._expression_or_none(text) is not None:
            return f"placeholder {stripped}: {reason}"
        culprit = self._failing_placeholder(text, scope)
        if culprit is None:
            return f"template {_quote(stripped)}: {reason}"
        return f"placeholder {culprit} in {_quote(stripped)}: {reason}"

    def _expression_or_none(self, text: str) -> Expression | None:
        try:
            return self._expression(text)
        except JinjaError:
            return None

    def _failing_placeholder(self, text: str, scope: Mapping[str, Any]) -> str | None:
        """The first ``{{ … }}`` of ``text`` that fails on its own, or None when that cannot be told.

        Inside ``{% … %}`` blocks a placeholder may use loop variables, so evaluating it alone would
        blame the wrong one; there the whole template is named instead.
        """
        if "{%" in text:
            return None
        for placeholder in _PLACEHOLDER.findall(text):
            try:
                expression = self._expression(placeholder)
                if expression is not None:
                    _json_ready(expression(scope))
            except Exception:  # noqa: BLE001  # this is the search for the one that fails
                return str(placeholder)
        return None


def _single_expression(env: ImmutableSandboxedEnvironment, text: str) -> str | None:
    """The expression inside ``text`` when ``text`` is exactly one ``{{ … }}``, else None."""
    stripped = text.strip()
    if not (stripped.startswith("{{") and stripped.endswith("}}")):
        return None
    # The parse tells "{{ a }}" from "{{ a }} and {{ b }}", which the ends alone cannot.
    body = env.parse(stripped).body
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return None
    outputs = body[0].nodes
    if len(outputs) != 1 or isinstance(outputs[0], nodes.TemplateData):
        return None
    inner = stripped[2:-2]
    # Whitespace control ("{{- x -}}") is template syntax, not part of the expression.
    if inner[:1] in ("-", "+"):
        inner = inner[1:]
    if inner[-1:] in ("-", "+"):
        inner = inner[:-1]
    return inner


def _json_ready(value: Any) -> Any:
    """A native result as JSON data: tuples and iterators become lists; anything else is refused."""
    if isinstance(value, Undefined):
        # StrictUndefined raises on use; a bare one returned from an expression has not been used yet.
        value._fail_with_undefined_error()
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return str(value)  # a Markup is a str subclass; keep plain text
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, Iterable) and not isinstance(value, bytes | bytearray):
        # ``| map(...)`` and ``| select(...)`` give generators; the step wants their items.
        return [_json_ready(item) for item in value]
    raise _NotData(f"the value is a {type(value).__name__}, not data a step can hold "
                   f"(text, number, boolean, list or map)")


def _reason(error: Exception) -> str:
    """Jinja's own message for its errors; the type as well for anything else."""
    if isinstance(error, _NotData):
        return str(error)
    if isinstance(error, JinjaError):  # SecurityError included
        message = error.message or str(error)
        if isinstance(error, TemplateSyntaxError):
            return f"syntax error: {message}"
        return message
    return f"{type(error).__name__}: {error}"


def _quote(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "\u2026")


def truthy(value: Any) -> bool:
    """Whether a condition's value counts as true; text from a mixed template ("false", "0") does not."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none")
    return bool(value)
