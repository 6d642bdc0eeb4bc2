"""Reading request bodies within their limits, and JSON out of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from controller.errors import PayloadError
from controller.security.payloads import parse_json

HOOK_LIMIT = 1024 * 1024
"""A webhook body: at most 1 MiB."""
REQUEST_LIMIT = 25 * 1024 * 1024
"""Any other body (GitHub's push events go up to 25 MB)."""


def raw_body(limit: int) -> bytes:
    """The body, or 413 when it is over ``limit`` bytes (before reading it when the length is declared)."""
    return read_body(request.content_length, lambda: request.stream, limit)


def read_body(declared: int | None, stream: Callable[[], IO[bytes]], limit: int) -> bytes:
    """:func:`raw_body` of a request whose Content-Length is ``declared`` and whose body ``stream()`` opens."""
    if declared is not None and declared > limit:
        raise _too_large(limit)
    data = stream().read(limit + 1)
    if len(data) > limit:
        raise _too_large(limit)
    return data


def json_body(*, required: bool = True) -> Any:
    """The body as JSON (None when empty and not ``required``); PayloadError (400) when malformed."""
    return _json(required, None)


def json_object(*, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object ({} when empty and not ``required``; a JSON ``null`` is not an object)."""
    value = _json(required, {})
    if not isinstance(value, dict):
        raise PayloadError(f"the request body must be a JSON object ({{...}}), not {_kind(value)}")
    return value


def _json(required: bool, empty: Any) -> Any:
    raw = raw_body(REQUEST_LIMIT)
    if not raw.strip():
        if required:
            raise PayloadError("the request needs a JSON body; send one with Content-Type: application/json")
        return empty
    return parse_json(raw)


def flag(name: str) -> bool:
    """A boolean query parameter ``?name=``: true/1/yes or false/0/no (absent: false); PayloadError otherwise."""
    value = (request.args.get(name) or "false").lower()
    if value not in _FLAGS:
        raise PayloadError(f"?{name}= must be true or false, not {value[:40]!r}")
    return _FLAGS[value]


_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    """``body[name]`` if it has the JSON type ``kind``; PayloadError naming the field otherwise."""
    if name not in body or body[name] is None:
        if required:
            raise PayloadError(f"the request body needs the field {name!r}")
        return None
    value = body[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
        raise PayloadError(f"field {name!r} must be {_names(kind)}, not {_kind(value)}")
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", dict: "an object", list: "an array"}
    return " or ".join(names.get(k, k.__name__) for k in _tuple(kind))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


def _too_large(limit: int) -> RequestEntityTooLarge:
    return RequestEntityTooLarge(f"the request body is over the limit of {limit // 1024} KiB; send less")
