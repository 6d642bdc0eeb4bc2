"""The OpenAPI 3.1 document of the service, served at ``GET /api/v1/openapi.json``.

Written by hand, kept true by a test that walks the Flask URL map both ways: every route is
documented with its methods, and every documented operation is a route.
"""

from __future__ import annotations

from typing import Any

from controller.model.entities import ENTITY_TYPES
from controller.model.ids import ID_MAX
from controller.model.refs import REF_ID_PATTERN
from controller.model.statuses import NAMES as STATUSES
from controller.portable.document import FORMAT

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema) -> Schema:
    return {"content": {"application/json": {"schema": schema}}}


def _answer(description: str, schema: Schema | None = None) -> Schema:
    return {"description": description, **(_json(schema) if schema else {})}


ERROR = _answer("an error", _ref("Error"))
OBJECT: Schema = {"type": "object"}
EXECUTION_ID = {"type": "object", "properties": {"execution_id": {"type": "integer"}}, "required": ["execution_id"]}
STARTED = {"type": "object", "properties": {"executions": {"type": "array", "items": {"type": "integer"}}}}
DECISION = {"type": "object", "required": ["at", "workflow", "version", "trigger", "decision", "reason", "execution_id"],
            "properties": {"at": {"type": "string", "format": "date-time"}, "workflow": {"type": "string"},
                           "version": {"type": ["integer", "null"]}, "trigger": {"type": "string"},
                           "decision": {"enum": ["started", "filtered", "dropped", "refused"]},
                           "reason": {"type": "string"}, "execution_id": {"type": ["integer", "null"]}}}
TIMELINE = {"type": "object", "properties": {"record": OBJECT, "decisions": {"type": "array", "items": DECISION}}}


def _param(name: str, where: str = "path", schema: Schema | None = None, description: str = "") -> Schema:
    return {"name": name, "in": where, "required": where == "path", "schema": schema or {"type": "string"},
            **({"description": description} if description else {})}


def _op(summary: str, ok: tuple[int, str, Schema | None], *, permission: tuple[str, ...] | None = None,
        params: list[Schema] | None = None, body: Schema | None = None, errors: tuple[int, ...] = (),
        body_type: str = "application/json", public: bool = False, body_required: bool = True) -> Schema:
    status, description, schema = ok
    responses: dict[str, Any] = {str(status): _answer(description, schema)}
    extra = () if public else (401, 403)
    for code in sorted({*errors, *extra}):
        responses[str(code)] = ERROR
    op: Schema = {"summary": summary, "responses": responses}
    if permission:
        op["description"] = f"Needs the permission {' or '.join(permission)} (or admin)."
        op["x-permissions"] = list(permission)
    if public:
        op["security"] = []
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": {body_type: {"schema": body}}}
    return op


WORKFLOW = [_param("account"), _param("name")]
ACCOUNT = [_param("account")]
ID: Schema = {"type": "integer", "minimum": 1, "maximum": ID_MAX}
EXECUTION = [_param("execution_id", schema=ID)]
NONEMPTY: Schema = {"type": "string", "minLength": 1}
ENTITY: Schema = {"type": "string", "maxLength": 32,
                  "pattern": f"^({'|'.join(ENTITY_TYPES)}|object_type:{REF_ID_PATTERN})$"}
RECORD_REF = {"type": ["object", "null"], "description": "null: no record",
              "properties": {"type": ENTITY, "id": {"oneOf": [NONEMPTY, {"type": "integer"}]}}, "required": ["type", "id"]}
RECORD = [_param("account"), _param("type_", description="a record type: ticket, lead, ... or object_type:<id>"),
          _param("record_id")]


def _paths() -> dict[str, Any]:
    read = ("workflow.read",)
    return {
        "/healthz": {"get": _op("The process is up", (200, "up", OBJECT), public=True)},
        "/readyz": {"get": _op("The store answers and the last reconcile is not stalled", (200, "ready", OBJECT),
                               errors=(503,), public=True)},
        "/hooks/{account}/{name}": {"post": {
            "summary": "Trigger a webhook workflow",
            "description": "Signed with the workflow's secret: X-Wfc-Timestamp (unix seconds) and X-Wfc-Signature: "
                           "sha256=<hex HMAC-SHA256(secret, '<timestamp>.<raw body>')>; or the Standard Webhooks "
                           "way: webhook-id, webhook-timestamp and webhook-signature: v1,<base64 HMAC-SHA256(base64-"
                           "decoded secret after whsec_, '<id>.<timestamp>.<raw body>')> (several, space-separated, "
                           "during a rotation). A timestamp more than 300 s from now, or a delivery accepted before, "
                           "is refused. The JSON body (at most 1 MiB) is trigger.body.",
            "security": [],
            "parameters": [*WORKFLOW, _param("X-Wfc-Timestamp", "header"), _param("X-Wfc-Signature", "header"),
                           _param("webhook-id", "header"), _param("webhook-timestamp", "header"),
                           _param("webhook-signature", "header")],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
            "responses": {"202": _answer("queued", EXECUTION_ID),
                          **{str(c): ERROR for c in (400, 401, 404, 409, 413, 429)}},
        }},
        "/hooks/git": {"post": _op(
            "A git push: start a reconcile pass now (GitHub X-Hub-Signature-256 or GitLab X-Gitlab-Token)",
            (202, "a pass was requested", OBJECT), body={}, errors=(401, 404, 413, 503), public=True)},
        "/api/v1/openapi.json": {"get": _op("This document", (200, "OpenAPI 3.1", OBJECT), public=True)},
        "/api/v1/workflows": {"get": _op(
            "The workflows of the token's account", (200, "workflows", {"type": "object", "properties": {
                "workflows": {"type": "array", "items": _ref("Workflow")}}}),
            permission=read, params=[_param("account", "query")], errors=(404,))},
        "/api/v1/workflows/{account}/{name}": {"get": _op(
            "One workflow: version, enabled, sync, conditions, held executions, rate-limit drops",
            (200, "the workflow", _ref("Workflow")), permission=read, params=WORKFLOW, errors=(404,))},
        "/api/v1/workflows/{account}/{name}/versions": {"get": _op(
            "Versions, newest first", (200, "versions", OBJECT), permission=read, params=WORKFLOW, errors=(404,))},
        "/api/v1/workflows/{account}/{name}/audit": {"get": _op(
            "Audit events, newest first", (200, "events", OBJECT), permission=read, params=WORKFLOW, errors=(404,))},
        "/api/v1/workflows/{account}/{name}/webhook-secret": {
            "get": _op("The signing secret's fingerprint and creation time", (200, "the secret's fingerprint",
                                                                                _ref("SecretInfo")),
                       permission=read, params=WORKFLOW, errors=(404,)),
            "post": _op("Rotate the signing secret: the new one is returned once, the old one stops working now",
                        (200, "the new secret", {**_ref("SecretInfo"), "properties": {"secret": {"type": "string"}}}),
                        permission=("workflow.manage",), params=WORKFLOW, errors=(404,)),
        },
        "/api/v1/workflows/{account}/{name}/run": {"post": _op(
            "Run a workflow now (the \"Run workflow\" button)", (202, "queued", EXECUTION_ID),
            permission=("workflow.run_manual",), params=WORKFLOW,
            body={"type": "object", "properties": {"record": RECORD_REF, "payload": {}}}, body_required=False,
            errors=(400, 404, 409, 422, 429))},
        "/api/v1/workflows/{account}/{name}/dry-run": {"post": _op(
            "Dry-run the applied version: no side effects", (200, "the dry run's trace", OBJECT),
            permission=("workflow.dry_run",), params=WORKFLOW,
            body={"type": "object", "properties": {"record": RECORD_REF}}, body_required=False,
            errors=(400, 404, 409, 422))},
        "/api/v1/workflows/{account}/{name}/replay": {"post": _op(
            "The impact preview: the workflow's recent events dry-run through the applied version and the proposed "
            "one in the body, compared; values only with workflow.replay (else field paths and counts)",
            (200, "the replay report: totals, headline, groups of differences with examples", OBJECT),
            permission=("workflow.read", "workflow.replay"), params=WORKFLOW,
            body={"type": "object", "required": ["source"], "properties": {
                "source": {"type": "string", "description": "the proposed workflow file"},
                "path": {"type": "string"}, "limit": {"type": "integer", "minimum": 1},
                "since": {"type": "string", "description": "a duration: only events this recent (24h)"},
                "like": {"type": "string", "description": "ACCOUNT/NAME whose events to replay"},
                "calls": {"type": "object", "additionalProperties": {"type": "string"},
                          "description": "name -> proposed file of other workflows of the account the change "
                                         "touches: a workflow.call of one runs its proposed version"}}},
            errors=(400, 403, 404, 422))},
        "/api/v1/workflows/{account}/{name}/resume": {"post": _op(
            "Resume a workflow the controller suspended (its mailbox or channel went away), once that is active again",
            (200, "resumed", OBJECT), permission=("workflow.manage",), params=WORKFLOW, errors=(404, 409))},
        "/api/v1/workflows/{account}/{name}/export": {"get": _op(
            "The export document: the definition with every account reference made a binding (wfctl.export/v1)",
            (200, "the document", OBJECT), permission=read, errors=(400, 403, 404),
            params=[*WORKFLOW, _param("with_dependencies", "query", {"type": "boolean"})])},
        "/api/v1/alerts": {"get": _op(
            "Alerts of the token's account, newest first: rate-limit drops, burst failures, suspensions",
            (200, "alerts", OBJECT), permission=read, errors=(400, 404),
            params=[_param("account", "query"), _param("open", "query", {"type": "boolean"})])},
        "/api/v1/workflows/{account}/{name}/metrics": {"get": _op(
            "Success rate, volume, active and waiting time, failures by class, drops and the slowest and most failing "
            "actions over a window, against the window before; by=version splits them per version (commit, author)",
            (200, "the figures", OBJECT), permission=read, errors=(403, 404, 422),
            params=[*WORKFLOW, _param("window", "query", {"enum": ["24h", "7d", "30d"]}, "default 24h"),
                    _param("by", "query", {"enum": ["version"]})])},
        "/api/v1/executions": {"get": _op(
            "Executions of the token's account, newest first", (200, "a page of executions", OBJECT),
            permission=read, errors=(400, 404),
            params=[_param("workflow", "query"),
                    _param("status", "query", {"enum": [*STATUSES, ""]}, "empty: any status"),
                    _param("since", "query", {"anyOf": [{"type": "string", "format": "date-time"}, {"const": ""}]},
                           "empty: any time"),
                    _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}),
                    _param("before", "query", ID, "the next_before of the previous page")])},
        "/api/v1/executions/{execution_id}": {"get": _op(
            "One execution with its per-action trace", (200, "the execution", OBJECT), permission=read,
            params=EXECUTION, errors=(404,))},
        "/api/v1/executions/{execution_id}/retry": {"post": _op(
            "Retry a failed or terminated execution (within the workflow's rate limit)",
            (202, "queued", EXECUTION_ID), permission=("workflow.retry",), params=EXECUTION,
            body={"type": "object", "properties": {"latest": {"type": ["boolean", "null"]}}}, body_required=False,
            errors=(400, 404, 409, 429))},
        "/api/v1/executions/{execution_id}/cancel": {"post": _op(
            "Cancel an execution", (202, "terminated or cancelling", OBJECT), permission=("workflow.manage",),
            params=EXECUTION, errors=(404, 409))},
        "/api/v1/accounts/{account}/metrics": {"get": _op(
            "The account's worst performers over a window: most failures, slowest p95, most drops, with deltas",
            (200, "the overview", OBJECT), permission=read, errors=(403, 404, 422),
            params=[*ACCOUNT, _param("window", "query", {"enum": ["24h", "7d", "30d"]}, "default 7d"),
                    _param("min_executions", "query", ID, "default 10")])},
        "/metrics": {"get": {
            "summary": "Prometheus metrics (text exposition format)",
            "description": "No token unless WFC_METRICS_TOKEN is set; then Authorization: Bearer <that token>.",
            "security": [],
            "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
                          "401": ERROR}}},
        "/api/v1/accounts/{account}/imports/validate": {"post": _op(
            "Plan an import into the account: files that would be written, bindings resolved and open; writes nothing",
            (200, "the plan", OBJECT), permission=read, params=ACCOUNT, errors=(400, 403, 404, 422),
            body={"type": "object", "required": ["document"], "properties": {
                "document": {"type": "object", "required": ["format", "workflows"],
                             "properties": {"format": {"const": FORMAT}, "workflows": {"type": "array"}}},
                "bindings": OBJECT, "match": {"enum": ["name"]}, "renames": OBJECT}})},
        "/api/v1/accounts/{account}/records/{type_}/{record_id}/workflows": {"get": _op(
            "The manual workflows a record of this type offers", (200, "workflows", OBJECT),
            permission=("workflow.read", "workflow.run_manual"), params=RECORD, errors=(404, 422))},
        "/api/v1/accounts/{account}/records/{type_}/{record_id}/timeline": {"get": _op(
            "What admission decided for the record's triggers, newest first (\"why did it not get the e-mail?\")",
            (200, "the decisions", TIMELINE), permission=("workflow.read",), params=RECORD, errors=(404, 422))},
        "/api/v1/accounts/{account}/records/{type_}": {"post": _op(
            "Create a record (fires created triggers)", (201, "the record and the executions it started", OBJECT),
            permission=("records.write",), params=RECORD[:2], body=OBJECT, errors=(400, 404, 422))},
        "/api/v1/accounts/{account}/records/{type_}/{record_id}": {
            "patch": _op("Update a record (fires updated triggers)", (200, "the record", OBJECT),
                         permission=("records.write",), params=RECORD, body=OBJECT, errors=(400, 404, 422)),
            "delete": _op("Delete a record (fires deleted triggers)", (200, "the record as it was", OBJECT),
                          permission=("records.write",), params=RECORD, errors=(404, 422)),
        },
        "/api/v1/accounts/{account}/events": {"post": _op(
            "A record event from a host that keeps its own records (fires record triggers)",
            (202, "the executions it started", STARTED), permission=("records.write",), params=ACCOUNT,
            body={"type": "object", "required": ["entity", "id", "event"], "properties": {
                "entity": ENTITY, "id": {"oneOf": [NONEMPTY, {"type": "integer"}]},
                "event": {"enum": ["created", "updated", "deleted"]}, "record": {"type": ["object", "null"]}}},
            errors=(400, 404, 422))},
        "/api/v1/accounts/{account}/mail": {"post": _op(
            "Inbound mail for email triggers: JSON {mailbox, message}, or message/rfc822 with ?mailbox=",
            (202, "the executions it started", STARTED), permission=("records.write",),
            params=[*ACCOUNT, _param("mailbox", "query")],
            body={"type": "object", "required": ["mailbox", "message"], "properties": {
                "mailbox": {"type": "string", "pattern": "^mailbox:.+"}, "message": NONEMPTY}},
            errors=(400, 404, 422))},
        "/api/v1/accounts/{account}/directory": {
            "get": _op("The references the account's directory holds, with their status (no contact data)",
                       (200, "entries", OBJECT), permission=("workflow.read",), params=ACCOUNT, errors=(404,)),
            "put": _op("Replace the account directory (users, mailboxes, channels, object types)",
                       (200, "entries per kind", OBJECT), permission=("directory.write",), params=ACCOUNT,
                       body=OBJECT, errors=(400, 404, 422))},
        "/api/v1/accounts/{account}/directory/{kind}/{ref_id}": {"patch": _op(
            "Change a directory entry's status", (200, "the entry", OBJECT), permission=("directory.write",),
            params=[*ACCOUNT, _param("kind"), _param("ref_id")],
            body={"type": "object", "required": ["status"], "additionalProperties": False, "properties": {
                "status": {"enum": ["active", "deactivated", "deleted", "disconnected"]}}}, errors=(400, 404, 422))},
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "wfctl", "version": "1",
                 "description": "Signed webhooks, manual runs, host events and a token-guarded read API of wfctl. "
                                "Errors are {\"error\": {\"code\", \"message\"}}."},
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "a token from `wfctl token create`"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Workflow": {"type": "object", "properties": {
                    "id": {"type": "string"}, "version": {"type": ["integer", "null"]}, "enabled": {"type": "boolean"},
                    "trigger": {"type": ["string", "null"]}, "sync": {"type": "string"},
                    "conditions": {"type": "array", "items": OBJECT},
                    "held_executions": {"type": "integer"}, "dropped": {"type": "integer"}}},
                "SecretInfo": {"type": "object", "properties": {
                    "workflow": {"type": "string"}, "fingerprint": {"type": "string"},
                    "created_at": {"type": "string", "format": "date-time"}, "generation": {"type": "integer"}}},
            },
        },
    }
