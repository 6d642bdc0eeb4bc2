"""Every error answer is JSON: ``{"error": {"code": "...", "message": "..."}}``.

:class:`~controller.errors.WfcError` types map to HTTP statuses; werkzeug's HTTP errors (404 for
an unknown path, 405, 413) keep their status; anything else is a 500 whose message names a
request id to find in the log, never a traceback.
"""

from __future__ import annotations

import logging
import uuid

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


def error_response(status: int, code: str, message: str) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def status_of(error: WfcError) -> tuple[int, str]:
    for kind, status, code in STATUS:
        if isinstance(error, kind):
            return status, code
    return 500, "internal"


def _wfc_error(error: WfcError) -> Response:
    status, code = status_of(error)
    if status >= 500:
        log.error("%s %s: %s", request.method, request.path, error)
    response = error_response(status, code, str(error))
    if isinstance(error, AuthError) and status == 401 and request.path.startswith("/api/"):
        response.headers["WWW-Authenticate"] = 'Bearer realm="wfctl"'
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    code = (error.name or "error").lower().replace(" ", "_").replace("'", "")
    response = error_response(status, code, error.description or error.name)
    allowed = getattr(error, "valid_methods", None)
    if allowed:  # 405 says which methods the path takes
        response.headers["Allow"] = ", ".join(allowed)
    return response


def _unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):  # pragma: no cover - Flask routes these to _http_error
        return _http_error(error)
    request_id = uuid.uuid4().hex[:12]
    log.exception("request %s: %s %s failed", request_id, request.method, request.path)
    return error_response(500, "internal", f"internal error (request id {request_id}); the server log has the details")


def init_app(app: Flask) -> None:
    app.register_error_handler(WfcError, _wfc_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
