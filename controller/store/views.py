"""Read models of the store as JSON-ready dicts: status, history, audit.

The CLI prints them and the HTTP API serves them, so their keys are the public contract
(the reconcile issue's `wfctl status|history|audit --json`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select

from controller.errors import NotFoundError
from controller.model.statuses import ACTIVE, ordered
from controller.store import loops
from controller.store.tables import (
    as_utc,
    audit_events,
    execution_steps,
    executions,
    rate_limit_drops,
    sources,
    workflow_suspensions,
    workflow_versions,
    workflows,
)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return as_utc(value).isoformat()


def status(conn: Connection, source: str = "default") -> dict[str, Any]:
    row = conn.execute(select(sources).where(sources.c.name == source)).mappings().first()
    source_view = {
        "name": source,
        "location": row["location"] if row else None,
        "branch": row["branch"] if row else None,
        "last_applied_commit": row["last_applied_commit"] if row else None,
        "last_attempted_commit": row["last_attempted_commit"] if row else None,
        "conditions": list(row["conditions"]) if row else [],
    }
    rows = conn.execute(select(workflows).where(workflows.c.deleted.is_(False)).order_by(workflows.c.key)).mappings()
    e = executions.c
    counts: dict[tuple[str, str], int] = {
        (key, state): n for key, state, n in conn.execute(
            select(e.workflow_key, e.status, func.count()).where(e.status.in_(ordered(ACTIVE)))
            .group_by(e.workflow_key, e.status))
    }
    suspended = {row.workflow_id: row for row in conn.execute(select(workflow_suspensions))}
    views = []
    for row in rows:
        view = workflow_view(row, suspended.get(row["id"]))
        active = counts.get((row["key"], "running"), 0) + counts.get((row["key"], "waiting"), 0)
        queued = counts.get((row["key"], "queued"), 0)
        view["executions_in_flight"] = active
        view["held_executions"] = queued if row["sync"] == "Blocked" else 0
        views.append(view)
    return {"source": source_view, "workflows": views, "loops": loops.recent(conn, datetime.now(UTC))}


def not_ready(conn: Connection) -> list[dict[str, Any]]:
    """Workflows that are not Synced (Invalid or Blocked), without reading the others."""
    w = workflows.c
    rows = conn.execute(select(w.key, w.sync, w.message).where(w.deleted.is_(False), w.sync != "Synced").order_by(w.key))
    return [{"id": key, "sync": sync, "message": message} for key, sync, message in rows]


def workflow_view(row: Any, suspension: Any = None) -> dict[str, Any]:
    """A workflow row as status shows it; ``suspension`` its ``workflow_suspensions`` row, if any."""
    return {
        "id": row["key"],
        "path": row["path"],
        "version": row["version"] if row["content_hash"] else None,
        "enabled": row["enabled"],
        "trigger": row["trigger_type"],
        "sync": row["sync"],
        "message": row["message"],
        "last_applied_commit": row["last_applied_commit"],
        "last_attempted_commit": row["last_attempted_commit"],
        "conditions": list(row["conditions"]),
        "suspended": ({"ref": suspension.ref, "reason": suspension.reason, "since": iso(suspension.since)}
                      if suspension is not None else None),
    }


def workflow_id(conn: Connection, key: str) -> int:
    found = conn.execute(select(workflows.c.id).where(workflows.c.key == key)).scalar()
    if found is None:
        raise NotFoundError(f"no workflow {key!r} in the store; run `wfctl sync` or check `wfctl status`",
                            workflow=key)
    return int(found)


def history(conn: Connection, key: str) -> list[dict[str, Any]]:
    """Versions of a workflow, newest first."""
    wid = workflow_id(conn, key)
    v = workflow_versions.c
    rows = conn.execute(
        select(v.version, v.commit, v.author, v.author_email, v.committed_at, v.summary, v.restored_from, v.path,
               v.signer, v.signing_key)
        .where(v.workflow_id == wid)
        .order_by(v.version.desc())
    ).mappings()
    return [
        {"version": r["version"], "commit": r["commit"], "author": r["author"], "author_email": r["author_email"],
         "committed_at": iso(r["committed_at"]), "summary": r["summary"], "restored_from": r["restored_from"],
         "path": r["path"], "signer": r["signer"], "signing_key": r["signing_key"]}
        for r in rows
    ]


def audit(conn: Connection, key: str) -> list[dict[str, Any]]:
    """Audit events of a workflow, newest first; an event that made a version names its verified signer."""
    wid = workflow_id(conn, key)
    a, v = audit_events.c, workflow_versions.c
    made = and_(v.workflow_id == a.workflow_id, v.version == a.version, v.commit == a.commit)
    rows = conn.execute(
        select(audit_events, v.signer, v.signing_key).outerjoin(workflow_versions, made)
        .where(a.workflow_id == wid).order_by(a.id.desc())
    ).mappings()
    return [
        {"at": iso(r["at"]), "actor": r["actor"], "action": r["action"], "version": r["version"],
         "commit": r["commit"], "changes": list(r["changes"]), "message": r["message"],
         "signer": r["signer"], "signing_key": r["signing_key"]}
        for r in rows
    ]


def current_definition(conn: Connection, key: str) -> dict[str, Any] | None:
    """The normalized definition of the workflow's active version, or None (unknown, deleted, never valid)."""
    w, v = workflows.c, workflow_versions.c
    found = conn.execute(
        select(v.content).join(workflows, and_(v.workflow_id == w.id, v.version == w.version))
        .where(w.key == key, w.deleted.is_(False), w.content_hash.is_not(None))
    ).scalar()
    return dict(found) if found is not None else None


def version_content(conn: Connection, key: str, version: int) -> dict[str, Any]:
    """One version's row: normalized content and the file text as committed."""
    wid = workflow_id(conn, key)
    v = workflow_versions.c
    row = conn.execute(select(workflow_versions).where(v.workflow_id == wid, v.version == version)).mappings().first()
    if row is None:
        raise NotFoundError(f"{key} has no version {version}; see `wfctl history {key}`", workflow=key)
    return {"version": row["version"], "commit": row["commit"], "path": row["path"], "content": row["content"],
            "source_text": row["source_text"], "content_hash": row["content_hash"]}


def execution(conn: Connection, execution_id: int) -> dict[str, Any]:
    """One execution with its per-action trace (`wfctl executions show --json`)."""
    row = conn.execute(select(executions).where(executions.c.id == execution_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no execution {execution_id}; see `wfctl executions list`")
    s = execution_steps.c
    steps = conn.execute(select(execution_steps).where(s.execution_id == execution_id).order_by(s.seq)).mappings()
    return {**_execution_summary(row), "steps": [_step_view(step) for step in steps]}


def execution_workflow(conn: Connection, execution_id: int) -> str | None:
    """The ``ACCOUNT/NAME`` of an execution's workflow, or None when there is no such execution."""
    found = conn.execute(select(executions.c.workflow_key).where(executions.c.id == execution_id)).scalar()
    return str(found) if found is not None else None


def executions_list(conn: Connection, *, workflow: str | None = None, status: str | None = None,
                    since: datetime | None = None, limit: int = 100, before: int | None = None,
                    account: str | None = None) -> list[dict[str, Any]]:
    """Executions, newest first; ``before`` pages by id; ``account`` keeps one account's."""
    e = executions.c
    query = select(executions).order_by(e.id.desc()).limit(limit)
    if account is not None:
        query = query.where(e.workflow_id.in_(select(workflows.c.id).where(workflows.c.account == account)))
    if workflow:
        query = query.where(e.workflow_key == workflow)
    if status:
        query = query.where(e.status == status)
    if since:
        query = query.where(e.created_at >= since)
    if before:
        query = query.where(e.id < before)
    return [_execution_summary(row) for row in conn.execute(query).mappings()]


def _execution_summary(row: Any) -> dict[str, Any]:
    started, finished = row["started_at"], row["finished_at"]
    duration = int((finished - started).total_seconds() * 1000) if started and finished else None
    return {
        "id": row["id"], "workflow": row["workflow_key"], "version": row["version"], "status": row["status"],
        "trigger": row["trigger"], "started_at": iso(started), "finished_at": iso(finished),
        "duration_ms": duration, "error": row["error"], "failure": row["failure"],
        "waited_seconds": round(row["waited_seconds"], 3), "retry_of": row["retry_of"],
        "parent_id": row["parent_id"], "created_at": iso(row["created_at"]), "output": row["output"],
    }


def _step_view(row: Any) -> dict[str, Any]:
    output = row["output"]
    if isinstance(output, dict) and "_wake_at" in output:
        output = {k: v for k, v in output.items() if k != "_wake_at"} or None
    return {
        "action_id": row["action_id"], "type": row["type"], "status": row["status"], "input": row["input"],
        "output": output, "error": row["error"], "failure": row["failure"], "attempts": row["attempts"],
        "attempt_log": list(row["attempt_log"]),
        "idempotency_key": row["idempotency_key"], "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]), "wait_seconds": row["wait_seconds"],
    }


def workflow(conn: Connection, key: str) -> dict[str, Any]:
    """One workflow as :func:`status` shows it, with its held executions' ids and rate-limit drops."""
    row = conn.execute(select(workflows).where(workflows.c.key == key, workflows.c.deleted.is_(False))).mappings().first()
    if row is None:
        raise NotFoundError(f"no workflow {key!r} in the store; run `wfctl sync` or check `wfctl status`", workflow=key)
    e = executions.c
    ids: dict[str, list[int]] = {}
    for state, execution_id in conn.execute(select(e.status, e.id).where(
            e.workflow_id == row["id"], e.status.in_(ordered(ACTIVE))).order_by(e.id)):
        ids.setdefault(state, []).append(execution_id)
    drops = conn.execute(select(rate_limit_drops.c.dropped, rate_limit_drops.c.last_dropped_at)
                         .where(rate_limit_drops.c.workflow_id == row["id"])).first()
    held = ids.get("queued", []) if row["sync"] == "Blocked" else []
    suspension = conn.execute(select(workflow_suspensions).where(workflow_suspensions.c.workflow_id == row["id"])
                              ).first()
    return {**workflow_view(row, suspension), "executions_in_flight": len(ids.get("running", [])) + len(ids.get("waiting", [])),
            "held_executions": len(held), "held_execution_ids": held,
            "dropped": drops.dropped if drops else 0, "last_dropped_at": iso(drops.last_dropped_at) if drops else None}


def manual_workflows(conn: Connection, account: str, entity: str) -> list[dict[str, Any]]:
    """The account's enabled manual workflows that run on records of ``entity`` ("Run workflow")."""
    w, v = workflows.c, workflow_versions.c
    rows = conn.execute(
        select(w.key, w.name, w.version, v.content)
        .join(workflow_versions, (v.workflow_id == w.id) & (v.version == w.version))
        .where(w.account == account, w.trigger_type == "manual", w.deleted.is_(False), w.enabled.is_(True),
               w.content_hash.is_not(None))
        .order_by(w.name)
    )
    return [{"id": key, "name": name, "version": version,
             "description": content.get("metadata", {}).get("description"),
             "entities": content["spec"]["trigger"]["entities"]}
            for key, name, version, content in rows if entity in content["spec"]["trigger"].get("entities", ())]
