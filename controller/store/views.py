"""Read models of the store as JSON-ready dicts: status, history, audit.

The CLI prints them and the HTTP API serves them, so their keys are the public contract
(the reconcile issue's `wfctl status|history|audit --json`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from controller.errors import NotFoundError
from controller.store.tables import audit_events, sources, workflow_versions, workflows


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


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
    return {"source": source_view, "workflows": [workflow_view(r) for r in rows]}


def workflow_view(row: Any) -> dict[str, Any]:
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
        select(v.version, v.commit, v.author, v.author_email, v.committed_at, v.summary, v.restored_from, v.path)
        .where(v.workflow_id == wid)
        .order_by(v.version.desc())
    ).mappings()
    return [
        {"version": r["version"], "commit": r["commit"], "author": r["author"], "author_email": r["author_email"],
         "committed_at": iso(r["committed_at"]), "summary": r["summary"], "restored_from": r["restored_from"],
         "path": r["path"]}
        for r in rows
    ]


def audit(conn: Connection, key: str) -> list[dict[str, Any]]:
    """Audit events of a workflow, newest first."""
    wid = workflow_id(conn, key)
    a = audit_events.c
    rows = conn.execute(select(audit_events).where(a.workflow_id == wid).order_by(a.id.desc())).mappings()
    return [
        {"at": iso(r["at"]), "actor": r["actor"], "action": r["action"], "version": r["version"],
         "commit": r["commit"], "changes": list(r["changes"]), "message": r["message"]}
        for r in rows
    ]


def version_content(conn: Connection, key: str, version: int) -> dict[str, Any]:
    """One version's row: normalized content and the file text as committed."""
    wid = workflow_id(conn, key)
    v = workflow_versions.c
    row = conn.execute(select(workflow_versions).where(v.workflow_id == wid, v.version == version)).mappings().first()
    if row is None:
        raise NotFoundError(f"{key} has no version {version}; see `wfctl history {key}`", workflow=key)
    return {"version": row["version"], "commit": row["commit"], "path": row["path"], "content": row["content"],
            "source_text": row["source_text"], "content_hash": row["content_hash"]}
