"""Workflows: read them, their versions and audit; run, dry-run; the webhook secret's fingerprint and rotation."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from controller import portable
from controller.engine.starting import start_now
from controller.errors import PayloadError, UsageError
from controller.metrics import windows
from controller.portable import document
from controller.safeguards import alerts as alert_store
from controller.safeguards import suspension
from controller.security import secrets
from controller.store import views
from webhooks.auth import actor, caller, own, requires
from webhooks.bodies import field, flag, json_object
from webhooks.context import services

blueprint = Blueprint("workflows", __name__)

ON_RECORDS = {"manual": "entities", "record": "entity", "inactivity": "entity"}


def _key(account: str, name: str) -> str:
    key = f"{account}/{name}"
    own(account, f"no workflow {key!r}; see GET /api/v1/workflows")
    return key


@blueprint.get("/workflows")
@requires("workflow.read")
def list_workflows() -> Any:
    """The workflows of the token's account (``?account=`` may name only that one)."""
    account = request.args.get("account") or caller().account
    own(account)
    with services().store.read() as conn:
        rows = views.status(conn)["workflows"]
    return {"workflows": [row for row in rows if row["id"].split("/", 1)[0] == account]}


@blueprint.get("/workflows/<account>/<name>")
@requires("workflow.read")
def get_workflow(account: str, name: str) -> Any:
    with services().store.read() as conn:
        return views.workflow(conn, _key(account, name))


@blueprint.get("/workflows/<account>/<name>/versions")
@requires("workflow.read")
def versions(account: str, name: str) -> Any:
    key = _key(account, name)
    with services().store.read() as conn:
        return {"workflow": key, "versions": views.history(conn, key)}


@blueprint.get("/workflows/<account>/<name>/audit")
@requires("workflow.read")
def audit(account: str, name: str) -> Any:
    key = _key(account, name)
    with services().store.read() as conn:
        return {"workflow": key, "events": views.audit(conn, key)}


@blueprint.get("/workflows/<account>/<name>/metrics")
@requires("workflow.read")
def metrics(account: str, name: str) -> Any:
    """Figures over ``?window=24h|7d|30d`` (default 24h) against the window before; ``&by=version`` splits them."""
    key = _key(account, name)
    by = request.args.get("by")
    if by not in (None, "version"):
        raise UsageError(f"unknown by={by!r}; the figures split only by=version")
    found = services()
    found.settings.config().require_metrics(account)
    with found.store.read() as conn:
        return windows.workflow_metrics(conn, key, request.args.get("window", "24h"), found.now(),
                                        by_version=by == "version")


@blueprint.post("/workflows/<account>/<name>/resume")
@requires("workflow.manage")
def resume(account: str, name: str) -> Any:
    """End a suspension once what the workflow depends on is active again (409 while it is not)."""
    key = _key(account, name)
    found = services()
    with found.writing() as conn:
        return suspension.resume(conn, key, actor=actor(), now=found.now())


@blueprint.get("/workflows/<account>/<name>/export")
@requires("workflow.read")
def export(account: str, name: str) -> Any:
    """The export document (``?with_dependencies=true`` includes what it calls), as `wfctl export` writes it."""
    key = _key(account, name)
    found = services()
    found.settings.config().require_portable(account)
    deps = flag("with_dependencies")
    with found.store.read() as conn:
        text = document.dumps(portable.export_document(conn, key, deps))
    return Response(text, content_type="application/json")


@blueprint.get("/alerts")
@requires("workflow.read")
def alerts() -> Any:
    """The token's account's alerts, newest first; ``?open=true`` for the open ones only."""
    account = request.args.get("account") or caller().account
    own(account)
    open_only = flag("open")
    with services().store.read() as conn:
        return {"alerts": alert_store.listing(conn, account=account, open_only=open_only)}


@blueprint.get("/workflows/<account>/<name>/webhook-secret")
@requires("workflow.read")
def secret_info(account: str, name: str) -> Any:
    """The secret's fingerprint and creation time; never the secret."""
    key = _key(account, name)
    found = services()
    with found.writing() as conn:
        secrets.ensure_secrets(conn, found.box, [key], found.now())
        return secrets.describe(conn, key).view()


@blueprint.post("/workflows/<account>/<name>/webhook-secret")
@requires("workflow.manage")
def rotate_secret(account: str, name: str) -> Any:
    """A new secret, shown this once; the old one stops working now."""
    key = _key(account, name)
    found = services()
    with found.writing() as conn:
        rotated = secrets.rotate(conn, found.box, key, actor=actor(), now=found.now())
    return rotated.view(), 200, {"Cache-Control": "no-store"}


@blueprint.post("/workflows/<account>/<name>/run")
@requires("workflow.run_manual")
def run(account: str, name: str) -> Any:
    """Start a run now, on ``{"record": {"type", "id"}}``; 422 when the workflow does not run on that type."""
    key = _key(account, name)
    body = json_object(required=False)
    record = _record(body)
    payload = body.get("payload")
    found = services()
    with found.store.read() as conn:
        version = views.workflow(conn, key)["version"]
        trigger = views.version_content(conn, key, version)["content"]["spec"]["trigger"] if version else {}
    _check_compatible(key, trigger, record)
    execution_id = start_now(found.engine, key, record=record, payload=payload)
    return {"execution_id": execution_id}, 202, {"Location": f"/api/v1/executions/{execution_id}"}


@blueprint.post("/workflows/<account>/<name>/dry-run")
@requires("workflow.dry_run")
def dry_run(account: str, name: str) -> Any:
    """Dry-run the applied version on ``{"record": {"type", "id"}}`` or a made-up record: no side effects."""
    from controller.check.target import dry_run as run_dry

    key = _key(account, name)
    record = _record(json_object(required=False))
    return run_dry(services().settings, key, record=record).view()


def _texts(body: dict[str, Any], name: str) -> dict[str, str]:
    """``body[name]``: an object of strings ({} when absent); PayloadError naming the field otherwise."""
    found = field(body, name, dict, required=False) or {}
    if not all(isinstance(value, str) for value in found.values()):
        raise PayloadError(f"field {name!r} must map workflow names to the text of their files")
    return dict(found)


def _record(body: dict[str, Any]) -> tuple[str, str] | None:
    ref = field(body, "record", dict, required=False)
    if ref is None:
        return None
    type_ = field(ref, "type", str)
    record_id = field(ref, "id", (str, int))
    if isinstance(record_id, bool):
        raise PayloadError("field 'id' must be a string or an integer, not a boolean")
    return type_, str(record_id)


def _check_compatible(key: str, trigger: dict[str, Any], record: tuple[str, str] | None) -> None:
    kind = trigger.get("type")
    if kind not in ON_RECORDS:
        if record is not None:
            raise UsageError(f"{key} is started by its {kind or 'missing'} trigger, not on a record; run it without "
                             f"\"record\"")
        return
    allowed = trigger.get("entities") or [trigger.get("entity")]
    if record is None:
        if kind == "manual":
            raise UsageError(f"{key} runs on a record; send {{\"record\": {{\"type\": one of {', '.join(allowed)}, "
                             f"\"id\": ...}}}}")
        return
    if record[0] not in allowed:
        raise UsageError(f"{key} runs on {', '.join(allowed)} records, not on {record[0]}")


@blueprint.post("/workflows/<account>/<name>/replay")
@requires("workflow.read", "workflow.replay")
def replay(account: str, name: str) -> Any:
    """The impact preview: the workflow's recent events through the applied and the proposed version.

    Values (records, payloads, addresses, errors) are in the report only for a token with ``workflow.replay``.
    """
    from controller.check.replay import DEFAULT_LIMIT, Request
    from controller.check.replay import replay as run_replay
    from controller.check.target import directory_for, record_reader

    key = _key(account, name)
    body = json_object()
    limit = field(body, "limit", (int, float), required=False)  # JSON Schema's integer: 200.0 is one too
    if isinstance(limit, float) and not limit.is_integer():
        raise PayloadError(f"field 'limit' must be an integer, not {limit}")
    found = services()
    config = found.engine.config  # the live engine's: its outbound policy judges the replayed calls too
    config.require("workflow_dry_run", account, "dry run (and so replay) is")
    like = field(body, "like", str, required=False)
    if like is not None:  # another account's workflow answers 404, as it does everywhere
        _key(like.partition("/")[0], like.partition("/")[2])
    asked = Request(key, field(body, "source", str), path=field(body, "path", str, required=False) or "",
                    limit=DEFAULT_LIMIT if limit is None else int(limit),
                    since=field(body, "since", str, required=False), like=like,
                    values=caller().allows("workflow.replay"), calls=_texts(body, "calls"))
    return run_replay(found.store, config, asked, directory=directory_for(found.store, account),
                      now=found.engine.clock.now, read_record=record_reader(found.store))
