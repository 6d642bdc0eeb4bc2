"""``http.request``: call an HTTP endpoint; status, headers and body are the step's output.

Where the call may go is the outbound-call guard's decision (:mod:`controller.outbound`),
made by the effects; the step's trace keeps the input with secret headers masked (:func:`recorded`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from controller.engine.actions.base import ActionContext, Done, Outcome
from controller.engine.effects import HttpCall
from controller.errors import ExecutionError
from controller.model import parse_duration
from controller.outbound import masked_headers

DEFAULT_TIMEOUT = 30.0  # seconds, when the action sets no timeout
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def run(inputs: dict[str, Any], ctx: ActionContext) -> Outcome:
    """Make the call through the effects; see :func:`build_call` for what is checked first."""
    call = build_call(inputs)
    extra = ctx.idempotency_headers() if call.method != "GET" else {}
    if extra and not any(name.lower() == ctx.idempotency_header.lower() for name in call.headers):
        call = replace(call, headers={**call.headers, **extra})  # a key set in the workflow wins
    return Done(ctx.effects.http_request(call))


def recorded(inputs: dict[str, Any]) -> dict[str, Any]:
    """The input as the trace keeps it: the values of headers named like secrets are ``***``
    (the call itself sends them)."""
    headers = inputs.get("headers")
    return {**inputs, "headers": masked_headers(headers)} if isinstance(headers, dict) else inputs


def build_call(inputs: dict[str, Any]) -> HttpCall:
    """The call the resolved ``inputs`` describe; ExecutionError for a bad URL, method or timeout."""
    method = str(inputs.get("method") or "GET").upper()
    if method not in METHODS:
        raise ExecutionError(f"method {method!r} is not one of {', '.join(METHODS)}")
    return HttpCall(
        method=method,
        url=_url(inputs.get("url")),
        headers=_headers(inputs.get("headers")),
        json=inputs.get("json"),
        body=None if inputs.get("body") is None else str(inputs["body"]),
        timeout=_timeout(inputs.get("timeout")),
        expect_status=_statuses(inputs.get("expect_status")),
    )


def _url(value: Any) -> str:
    url = "" if value is None else str(value).strip()
    parts = urlsplit(url)
    # A template can give any text; only web URLs may leave the controller (no file:, ftp:, ...).
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ExecutionError(f"url {url!r} is not an http:// or https:// URL")
    return url


def _headers(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ExecutionError(f"headers must be a map of names to values, got {type(value).__name__}")
    headers: dict[str, str] = {}
    for name, item in value.items():
        text = "" if item is None else str(item)
        if "\r" in text or "\n" in text:
            # A line break in a header value would let a record's data add headers of its own.
            raise ExecutionError(f"header {name!r} contains a line break")
        headers[str(name)] = text
    return headers


def _timeout(value: Any) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        return float(parse_duration(value))
    except ValueError as error:
        raise ExecutionError(f"timeout: {error}") from None


def _statuses(value: Any) -> tuple[int, ...]:
    if not value:
        return ()
    items = value if isinstance(value, list | tuple) else [value]
    try:
        return tuple(int(item) for item in items)
    except (TypeError, ValueError):
        raise ExecutionError(f"expect_status {value!r} is not a list of HTTP statuses") from None
