"""Executions: list (filtered, paginated), one with its trace, retry within the rate limit, cancel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flask import Blueprint, request
from werkzeug.exceptions import Conflict

from controller.errors import NotFoundError, PayloadError, UsageError
from controller.model.ids import ID_MAX
from controller.model.statuses import NAMES as STATUSES
from controller.store import views
from webhooks.auth import caller, own, requires
from webhooks.bodies import field, json_object
from webhooks.context import services

if TYPE_CHECKING:
    from sqlalchemy import Connection

blueprint = Blueprint("executions", __name__)

MAX_PAGE = 500


@blueprint.get("/executions")
@requires("workflow.read")
def list_executions() -> Any:
    """Newest first; ``?workflow=A/N&status=&since=ISO-8601&limit=&before=<id>``; ``next_before`` pages on."""
    account = caller().account
    workflow = request.args.get("workflow") or None
    if workflow is not None:
        own(workflow.split("/", 1)[0], f"no workflow {workflow!r}; see GET /api/v1/workflows")
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        raise PayloadError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    limit = _int_arg("limit", 50, 1, MAX_PAGE) or 50
    before = _int_arg("before", None, 1, ID_MAX)
    with services().store.read() as conn:
        rows = views.executions_list(conn, workflow=workflow, status=status, since=_since(), limit=limit,
                                     before=before, account=account)
    return {"executions": rows, "next_before": rows[-1]["id"] if len(rows) == limit else None}


@blueprint.get("/executions/<id:execution_id>")
@requires("workflow.read")
def get_execution(execution_id: int) -> Any:
    """One execution with its per-action trace (as `wfctl executions show --json`)."""
    with services().store.read() as conn:
        _check_owned(conn, execution_id)
        return views.execution(conn, execution_id)


@blueprint.post("/executions/<id:execution_id>/retry")
@requires("workflow.retry")
def retry(execution_id: int) -> Any:
    """A new execution linked to a failed or terminated one (``{"latest": true}``: on the newest version)."""
    latest = field(json_object(required=False), "latest", bool, required=False) or False
    found = services()
    with found.store.read() as conn:
        _check_owned(conn, execution_id)
    try:
        new_id = found.engine.retry(execution_id, latest=latest)  # over the rate limit: 429, counted
    except UsageError as e:
        if isinstance(e, PayloadError):
            raise
        raise Conflict(str(e)) from None
    return {"execution_id": new_id, "retry_of": execution_id}, 202, {"Location": f"/api/v1/executions/{new_id}"}


@blueprint.post("/executions/<id:execution_id>/cancel")
@requires("workflow.manage")
def cancel(execution_id: int) -> Any:
    """Terminate a queued or waiting execution now, a running one at its next step."""
    found = services()
    with found.store.read() as conn:
        _check_owned(conn, execution_id)
    try:
        state = found.engine.cancel(execution_id)
    except UsageError as e:
        raise Conflict(str(e)) from None
    return {"execution_id": execution_id, "status": state}, 202


def _check_owned(conn: Connection, execution_id: int) -> str:
    """The execution's workflow key; 404 when it does not exist or belongs to another account."""
    key = views.execution_workflow(conn, execution_id)
    if key is None or key.split("/", 1)[0] != caller().account:
        raise NotFoundError(f"no execution {execution_id}; see GET /api/v1/executions")
    return key


def _int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    text = request.args.get(name)
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise PayloadError(f"?{name}= must be a whole number from {low} to {high}, not {text[:40]!r}")
    return int(text)


def _since() -> datetime | None:
    text = request.args.get("since")
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(f"?since= must be an ISO-8601 time like 2026-01-05T09:00:00Z, not {text[:40]!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
