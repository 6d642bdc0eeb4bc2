"""Incoming hooks: signed webhook triggers, and git pushes that start a reconcile pass.

``POST /hooks/<account>/<name>`` (signed with the workflow's secret, the ``X-Wfc-*`` way or the
Standard Webhooks way, see :mod:`controller.security.signing`) queues an execution with the JSON body as ``trigger.body``.
``POST /hooks/git`` takes GitHub's ``X-Hub-Signature-256`` or GitLab's ``X-Gitlab-Token`` made
with ``WFC_GIT_WEBHOOK_SECRET`` and asks the controller for a pass now; a burst of pushes
coalesces into one pass.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import ServiceUnavailable

from controller.errors import AuthError, NotFoundError
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
from webhooks.bodies import HOOK_LIMIT, REQUEST_LIMIT, raw_body
from webhooks.context import services

GIT_SECRET_ENV = "WFC_GIT_WEBHOOK_SECRET"

blueprint = Blueprint("hooks", __name__)


@blueprint.after_request
def _count(response: Response) -> Response:
    """Every answer to a webhook trigger (error answers too) counts in wfctl_webhook_requests_total."""
    if request.endpoint == "hooks.webhook":
        prom.webhook_answered(response.status_code)
    return response


@blueprint.post("/hooks/<account>/<name>")
def webhook(account: str, name: str) -> Any:
    """A signed webhook: 202 with the id of the execution it queued."""
    body = raw_body(HOOK_LIMIT)
    headers = request.headers
    standard = SIGNATURE_HEADER not in headers and STANDARD_SIGNATURE_HEADER in headers
    execution_id = services().intake.receive(
        f"{account}/{name}", body=body, standard=standard, message_id=headers.get(STANDARD_ID_HEADER),
        timestamp=headers.get(STANDARD_TIMESTAMP_HEADER if standard else TIMESTAMP_HEADER),
        signature=headers.get(STANDARD_SIGNATURE_HEADER if standard else SIGNATURE_HEADER))
    return {"execution_id": execution_id}, 202, {"Location": f"/api/v1/executions/{execution_id}"}


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
