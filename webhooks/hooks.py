"""Incoming hooks: signed webhook triggers, and git pushes that start a reconcile pass.

``POST /hooks/<account>/<name>`` (signed with the workflow's secret, the ``X-Wfc-*`` way or the
Standard Webhooks way, see :mod:`controller.security.signing`) queues an execution with the JSON body as ``trigger.body``.
``POST /hooks/git`` takes GitHub's ``X-Hub-Signature-256`` or GitLab's ``X-Gitlab-Token`` made
with ``WFC_GIT_WEBHOOK_SECRET`` and asks the controller for a pass now; a burst of pushes
coalesces into one pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, request
from werkzeug.exceptions import HTTPException, ServiceUnavailable
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_content_length, get_input_stream

from controller.errors import AuthError, NotFoundError, WfcError
from controller.metrics import prom
from controller.security.signing import (
    SIGNATURE_HEADER,
    STANDARD_ID_HEADER,
    STANDARD_SIGNATURE_HEADER,
    STANDARD_TIMESTAMP_HEADER,
    TIMESTAMP_HEADER,
    github_signature_ok,
    gitlab_token_ok,
)
from webhooks.bodies import HOOK_LIMIT, REQUEST_LIMIT, raw_body, read_body
from webhooks.context import Services, services
from webhooks.errors import Answer, http_answer, unexpected_answer, wfc_answer

GIT_SECRET_ENV = "WFC_GIT_WEBHOOK_SECRET"

blueprint = Blueprint("hooks", __name__)

_SIGNED_BY = {name: "HTTP_" + name.upper().replace("-", "_") for name in (
    SIGNATURE_HEADER, TIMESTAMP_HEADER, STANDARD_ID_HEADER, STANDARD_SIGNATURE_HEADER, STANDARD_TIMESTAMP_HEADER)}


def answer_webhook(found: Services, environ: dict[str, Any], account: str, name: str) -> Answer:
    """The answer to a signed webhook, ``POST /hooks/<account>/<name>``: 202 with the id of the execution it
    queued, or the error's answer; counted in wfctl_webhook_requests_total either way.

    It works on the WSGI environ, so that :class:`FastHooks` can answer without Flask's request machinery
    (a request context, the session, routing and a Response cost as much as intake itself).
    """
    path = f"/hooks/{account}/{name}"
    try:
        body = read_body(get_content_length(environ), lambda: get_input_stream(environ, max_content_length=REQUEST_LIMIT),
                         HOOK_LIMIT)
        header = {name: environ.get(key) for name, key in _SIGNED_BY.items()}
        standard = header[SIGNATURE_HEADER] is None and header[STANDARD_SIGNATURE_HEADER] is not None
        execution_id = found.intake.receive(
            f"{account}/{name}", body=body, standard=standard, message_id=header[STANDARD_ID_HEADER],
            timestamp=header[STANDARD_TIMESTAMP_HEADER if standard else TIMESTAMP_HEADER],
            signature=header[STANDARD_SIGNATURE_HEADER if standard else SIGNATURE_HEADER])
        answer: Answer = (202, {"execution_id": execution_id}, {"Location": f"/api/v1/executions/{execution_id}"})
    except WfcError as e:
        answer = wfc_answer(e, "POST", path)
    except HTTPException as e:  # 413
        answer = http_answer(e)
    except Exception:  # noqa: BLE001 - a 500 naming a request id, as Flask's handler answers it
        answer = unexpected_answer("POST", path)
    prom.webhook_answered(answer[0])
    return answer


@blueprint.post("/hooks/<account>/<name>")
def webhook(account: str, name: str) -> Any:
    """A signed webhook (the route of record; :class:`FastHooks` answers these before Flask does)."""
    status, body, headers = answer_webhook(services(), request.environ, account, name)
    return body, status, headers


StartResponse = Callable[..., Any]


class FastHooks:
    """WSGI middleware: ``POST /hooks/<account>/<name>`` answered by :func:`answer_webhook` directly, the
    same bytes Flask would send; every other request goes on to the app."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]], found: Services):
        self.app = app
        self.found = found

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST":
            # Only the canonical form; Flask redirects //, 404s a trailing slash, and routes /hooks/git.
            parts = environ.get("PATH_INFO", "").split("/")
            if len(parts) == 4 and parts[1] == "hooks" and parts[2] and parts[3]:
                # PATH_INFO is latin-1 by WSGI; decoded to UTF-8 as werkzeug decodes it for routing.
                account, name = (part.encode("latin-1").decode("utf-8", "replace") for part in parts[2:])
                status, body, headers = answer_webhook(self.found, environ, account, name)
                data = (json.dumps(body, separators=(",", ":")) + "\n").encode()  # (Flask's compact JSON)
                start_response(f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}", [
                    ("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers.items()])
                return [data]
        return self.app(environ, start_response)


@blueprint.post("/hooks/git")
def git_push() -> Any:
    """A push to the repository: start a reconcile pass now."""
    found = services()
    if not found.git_secret:
        raise NotFoundError(f"the git push hook is not configured; set {GIT_SECRET_ENV} to the hook's secret "
                            f"(GitHub: Secret, GitLab: Secret token) and restart `wfctl serve`")
    body = raw_body(REQUEST_LIMIT)
    github, gitlab = request.headers.get("X-Hub-Signature-256"), request.headers.get("X-Gitlab-Token")
    if github is None and gitlab is None:
        raise AuthError("missing X-Hub-Signature-256 (GitHub) or X-Gitlab-Token (GitLab); configure the hook's "
                        f"secret as {GIT_SECRET_ENV}")
    if not (github_signature_ok(found.git_secret, body, github) if github is not None
            else gitlab_token_ok(found.git_secret, gitlab)):
        raise AuthError(f"the push hook's signature does not match; the hook's secret must equal {GIT_SECRET_ENV}")
    if found.controller is None:
        raise ServiceUnavailable("this process runs no reconcile loop; send the push hook to `wfctl serve`")
    found.controller.sync_now()
    return {"sync": "requested"}, 202
