"""What a host application pushes into an account: records, record events, inbound mail, the directory.

Record writes and events fire ``record`` triggers, mail fires ``email`` triggers; each answers with
the ids of the executions it queued. Also here: which manual workflows a record page offers.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, request

from controller import portable
from controller.engine.records import RecordService
from controller.engine.triggers import email
from controller.engine.triggers import record as record_trigger
from controller.errors import NotFoundError, PayloadError, UsageError
from controller.metrics import windows
from controller.model.directory import parse_directory
from controller.model.ids import ID_MAX
from controller.portable import document as portable_document
from controller.safeguards import suspension
from controller.security.payloads import parse_json
from controller.store import decisions, views
from controller.store import directory as store_directory
from controller.store import records as record_store
from webhooks.auth import own, requires
from webhooks.bodies import REQUEST_LIMIT, field, json_object, raw_body
from webhooks.context import services

blueprint = Blueprint("accounts", __name__, url_prefix="/accounts/<account>")

EVENTS = ("created", "updated", "deleted")


@blueprint.get("/records/<type_>/<record_id>/workflows")
@requires("workflow.read", "workflow.run_manual")
def manual_workflows(account: str, type_: str, record_id: str) -> Any:
    """The manual workflows a record of this type offers under "Run workflow"."""
    own(account)
    record_store.check_type(type_)
    with services().store.read() as conn:
        return {"record": {"type": type_, "id": record_id}, "workflows": views.manual_workflows(conn, account, type_)}


@blueprint.get("/records/<type_>/<record_id>/timeline")
@requires("workflow.read")
def timeline(account: str, type_: str, record_id: str) -> Any:
    """What admission decided for the record's triggers, newest first (as `wfctl records timeline --json`)."""
    own(account)
    record_store.check_type(type_)
    with services().store.read() as conn:
        found = decisions.record_timeline(conn, account, type_, record_id)
    return {"record": {"type": type_, "id": record_id}, "decisions": found}


@blueprint.get("/metrics")
@requires("workflow.read")
def metrics(account: str) -> Any:
    """The account's worst performers over ``?window=`` (default 7d); ``&min_executions=`` to be ranked."""
    own(account)
    least = request.args.get("min_executions", str(windows.MIN_EXECUTIONS))
    if not (least.isascii() and least.isdigit() and 1 <= int(least) <= ID_MAX):
        raise UsageError(f"min_executions must be a whole number of at least 1, not {least!r}")
    found = services()
    found.settings.config().require_metrics(account)
    with found.store.read() as conn:
        return windows.account_metrics(conn, account, request.args.get("window", "7d"), found.now(),
                                       min_executions=int(least))


@blueprint.post("/imports/validate")
@requires("workflow.read")
def validate_import(account: str) -> Any:
    """The plan of importing ``{"document", "bindings": {NAME: KIND:ID}, "match": "name", "renames": {OLD: NEW}}``
    into the account, against its directory and applied workflows; nothing is written."""
    own(account)
    found = services()
    found.settings.config().require_portable(account)
    body = json_object()
    parsed = portable_document.parse(json.dumps(field(body, "document", dict)), "document")
    given = portable.bindings_file(field(body, "bindings", dict, required=False) or {}, "bindings")
    renames = field(body, "renames", dict, required=False) or {}
    match = field(body, "match", str, required=False)
    if match not in (None, "name"):
        raise UsageError(f"match {match!r}: only \"name\" is known")
    with found.store.read() as conn:
        entries, existing = portable.target_state(conn, account)
    plan = portable_document.plan(parsed, account, entries=entries, existing=existing, given=given,
                                  match_names=match == "name", renames={str(k): str(v) for k, v in renames.items()})
    return plan.view()


@blueprint.post("/records/<type_>")
@requires("records.write")
def create_record(account: str, type_: str) -> Any:
    """Create a record in the built-in store; fires ``created`` triggers."""
    own(account)
    return _write(201, "create", account, type_, json_object())


@blueprint.patch("/records/<type_>/<record_id>")
@requires("records.write")
def update_record(account: str, type_: str, record_id: str) -> Any:
    """Merge fields into a record; fires ``updated`` triggers."""
    own(account)
    return _write(200, "update", account, type_, record_id, json_object())


@blueprint.delete("/records/<type_>/<record_id>")
@requires("records.write")
def delete_record(account: str, type_: str, record_id: str) -> Any:
    """Delete a record; fires ``deleted`` triggers."""
    own(account)
    return _write(200, "delete", account, type_, record_id)


def _write(status: int, action: str, *args: Any) -> Any:
    found = services()
    service = RecordService(found.engine)
    record = getattr(service, action)(*args)
    return {"record": record, "executions": service.started}, status


@blueprint.post("/events")
@requires("records.write")
def event(account: str) -> Any:
    """A record event from a host that keeps its own records: ``{"entity", "id", "event", "record"}``."""
    own(account)
    body = json_object()
    entity = record_store.check_type(field(body, "entity", str))
    record_id = field(body, "id", (str, int))
    if isinstance(record_id, bool) or not str(record_id).strip():
        raise PayloadError("field 'id' must be the record's id, a non-empty string or an integer")
    kind = field(body, "event", str)
    if kind not in EVENTS:
        raise UsageError(f"event must be one of {', '.join(EVENTS)}, not {kind!r}")
    record = {**(field(body, "record", dict, required=False) or {}), "id": str(record_id), "type": entity}
    found = services()
    with found.writing() as conn:
        started = record_trigger.fire(found.engine, conn, account, entity, kind, record)
    return {"executions": started}, 202


@blueprint.post("/mail")
@requires("records.write")
def mail(account: str) -> Any:
    """Inbound mail for ``email`` triggers: a message/rfc822 body with ``?mailbox=mailbox:ID``, or JSON
    ``{"mailbox", "message"}`` with the message as text."""
    own(account)
    if request.mimetype == "message/rfc822":
        mailbox, raw = request.args.get("mailbox") or "", raw_body(REQUEST_LIMIT)
        if not mailbox:
            raise PayloadError("name the mailbox: ?mailbox=mailbox:<id>")
    else:
        body = json_object()
        mailbox, raw = field(body, "mailbox", str), field(body, "message", str).encode("utf-8")
    found = services()
    try:
        with found.writing() as conn:
            started = email.deliver(found.engine, conn, account, mailbox, raw)
    except RecursionError:  # the e-mail parser recurses per nested MIME part
        raise PayloadError("the message nests MIME parts too deeply to read; send a flatter message") from None
    return {"executions": started}, 202


@blueprint.get("/directory")
@requires("workflow.read")
def read_directory(account: str) -> Any:
    """Which references the account's directory holds and their status (what `wfctl check --controller`
    checks against); no contact data, no credentials. 404 when no directory is loaded."""
    own(account)
    with services().store.read() as conn:
        entries = store_directory.snapshot(conn, [account]).get(account)
    if entries is None:
        raise NotFoundError(f"account {account!r} has no directory loaded; `wfctl directory load FILE --account "
                            f"{account}` or PUT /api/v1/accounts/{account}/directory")
    return {"account": account, "entries": [{"kind": e.kind, "id": e.id, "name": e.name, "status": e.status}
                                            for e in sorted(entries.values(), key=lambda e: e.ref)]}


@blueprint.put("/directory")
@requires("directory.write")
def replace_directory(account: str) -> Any:
    """Replace the account's whole directory (the directory file's shape, as JSON)."""
    own(account)
    raw = raw_body(REQUEST_LIMIT)
    parse_json(raw, "the directory")  # JSON only, and bounded, before the located parse: no YAML bombs over HTTP
    entries = parse_directory(raw.decode("utf-8"), "request.json")
    found = services()
    config = found.settings.config()
    with found.writing() as conn:
        counts, suspended = suspension.replace(conn, config, account, entries, found.now())
    return {"account": account, "counts": counts, "suspended": suspended}


@blueprint.patch("/directory/<kind>/<ref_id>")
@requires("directory.write")
def set_directory_status(account: str, kind: str, ref_id: str) -> Any:
    """Change one entry's status: ``{"status": "active" | "deactivated" | "deleted" | "disconnected"}``."""
    own(account)
    body = json_object()
    extra = sorted(set(body) - {"status"})
    if extra:
        raise UsageError(f"only the status of a directory entry can be changed here, not {', '.join(extra)}; "
                         f"PUT the whole directory for other changes")
    status = field(body, "status", str)
    found = services()
    config = found.settings.config()
    with found.writing() as conn:
        entry, suspended = suspension.set_status(conn, config, account, f"{kind}:{ref_id}", status, found.now())
    return {"ref": entry.ref, "kind": entry.kind, "id": entry.id, "name": entry.name, "status": entry.status,
            "suspended": suspended}
