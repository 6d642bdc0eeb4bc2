"""Every error answer is JSON: ``{"error": {"code": "...", "message": "..."}}``.

:class:`~controller.errors.WfcError` types map to HTTP statuses; werkzeug's HTTP errors (404 for
an unknown path, 405, 413) keep their status; anything else is a 500 whose message names a
request id to find in the log, never a traceback.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from controller.errors import (
    AuthError,
    ConflictError,
    DefinitionError,
    FeatureDisabled,
    GuardError,
    NotFoundError,
    PayloadError,
    PermissionDenied,
    RateLimited,
    StoreError,
    UsageError,
    WfcError,
)

log = logging.getLogger(__name__)

# Most specific first: the first match decides.
STATUS: tuple[tuple[type[WfcError], int, str], ...] = (
    (PermissionDenied, 403, "forbidden"),
    (AuthError, 401, "unauthorized"),
    (RateLimited, 429, "rate_limited"),
    (FeatureDisabled, 403, "forbidden"),
    (PayloadError, 400, "bad_request"),
    (ConflictError, 409, "conflict"),
    (StoreError, 503, "unavailable"),
    (NotFoundError, 404, "not_found"),
    (GuardError, 409, "conflict"),
    (DefinitionError, 422, "invalid"),
    (UsageError, 422, "invalid"),
)


def error_json(code: str, message: str) -> dict[str, Any]:
    """The body of every error answer."""
    return {"error": {"code": code, "message": message}}


def status_of(error: WfcError) -> tuple[int, str]:
    for kind, status, code in STATUS:
        if isinstance(error, kind):
            return status, code
    return 500, "internal"


Answer = tuple[int, dict[str, Any], dict[str, str]]
"""An answer before it is a response: status, JSON body, extra headers."""


def wfc_answer(error: WfcError, method: str, path: str) -> Answer:
    """The answer to ``error`` raised by ``method path`` (a 5xx is logged)."""
    status, code = status_of(error)
    if status >= 500:
        log.error("%s %s: %s", method, path, error)
    headers = {}
    if isinstance(error, AuthError) and status == 401 and path.startswith("/api/"):
        headers["WWW-Authenticate"] = 'Bearer realm="wfctl"'
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
    return status, error_json(code, str(error)), headers


def http_answer(error: HTTPException) -> Answer:
    """The answer to one of werkzeug's HTTP errors (404 for an unknown path, 405, 413)."""
    status = error.code or 500
    code = (error.name or "error").lower().replace(" ", "_").replace("'", "")
    allowed = getattr(error, "valid_methods", None)
    headers = {"Allow": ", ".join(allowed)} if allowed else {}  # a 405 says which methods the path takes
    return status, error_json(code, error.description or error.name), headers


def unexpected_answer(method: str, path: str) -> Answer:
    """A 500 for an exception no handler expected (call it in the ``except``): logged with a request id,
    which the message names, never the traceback."""
    request_id = uuid.uuid4().hex[:12]
    log.exception("request %s: %s %s failed", request_id, method, path)
    return 500, error_json("internal", f"internal error (request id {request_id}); the server log has the details"), {}


def _response(answer: Answer) -> Response:
    status, body, headers = answer
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers)
    return response


def _wfc_error(error: WfcError) -> Response:
    return _response(wfc_answer(error, request.method, request.path))


def _http_error(error: HTTPException) -> Response:
    return _response(http_answer(error))


def _unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):  # pragma: no cover - Flask routes these to _http_error
        return _http_error(error)
    return _response(unexpected_answer(request.method, request.path))


def init_app(app: Flask) -> None:
    app.register_error_handler(WfcError, _wfc_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
