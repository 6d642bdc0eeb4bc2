"""Untrusted JSON from request bodies, made safe to store on every back end.

Python's ``json`` accepts more than the store does: ``NaN``/``Infinity``, numbers that overflow to
infinity, lone surrogates and NUL characters (``\\ud800``, ``\\u0000``, which PostgreSQL's JSONB
refuses), and nesting deep enough to exhaust the stack. :func:`parse_json` refuses them all with a
:class:`~controller.errors.PayloadError` that says what to send instead.
"""

from __future__ import annotations

import json
import math
from typing import Any

from controller.errors import PayloadError

MAX_DEPTH = 64
"""How deeply objects and arrays may nest in a body."""


def parse_json(raw: bytes, what: str = "the request body") -> Any:
    """The JSON value in ``raw`` (UTF-8), or PayloadError naming the problem and where it is."""
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise PayloadError(f"{what} is not UTF-8 (bad byte at offset {e.start}); send JSON encoded as UTF-8") \
            from None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise PayloadError(f"{what} nests too deeply; at most {MAX_DEPTH} levels of objects and arrays") from None
    except ValueError as e:
        where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        message = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        raise PayloadError(f"{what} is not valid JSON: {message}{where}") from None
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH or "\\u" in text:
        _check(value, what)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send a number or null")


def _finite(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError(f"{literal[:40]} is too large for a number; send it as a string")
    return number


def _check(value: Any, what: str) -> None:
    """Nesting depth and characters the store refuses, without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                raise PayloadError(f"{what} nests deeper than {MAX_DEPTH} levels of objects and arrays")
            for key, child in item.items():
                _check_text(key, what)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                raise PayloadError(f"{what} nests deeper than {MAX_DEPTH} levels of objects and arrays")
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item, what)


def _check_text(text: str, what: str) -> None:
    if "\x00" in text:
        raise PayloadError(f"{what} contains a NUL character (\\u0000), which cannot be stored; remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(f"{what} contains a lone surrogate escape (like \\ud800), which is not Unicode text; "
                           f"send the character itself or a valid surrogate pair") from None
