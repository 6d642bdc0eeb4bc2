"""Applying a plan: the one place a reconcile pass writes, in one transaction.

The caller hands in a connection from :meth:`Store.write` (which holds the store's write lock).
The plan was made against the source's ``last_attempted_commit`` as seen before the lock; if
another pass moved it meanwhile, :class:`ConflictError` is raised and nothing is written, so two
passes at once can neither duplicate nor skip a version.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, Text, bindparam, cast, insert, select, update

from controller.errors import ConflictError
from controller.reconcile import conditions
from controller.reconcile.loader import bulk_loading
from controller.reconcile.plan import BlockedOp, DeleteOp, InvalidOp, Plan, VersionOp
from controller.reconcile.state import read_source
from controller.source import CommitInfo
from controller.source.verify import Outcome, Verdict
from controller.store.tables import audit_events, sources, workflow_versions, workflows


@dataclass(frozen=True)
class SourceMeta:
    name: str
    location: str
    branch: str
    root: str


def apply_plan(conn: Connection, plan: Plan, meta: SourceMeta, now: datetime, verified: Outcome | None = None,
               *, verifying: bool = False, fence: Callable[[Connection], object] | None = None) -> None:
    """Write every version, audit event, workflow row and the source's state of ``plan``.

    ``verified``: the pass's commits verified (``--verify-commits``): each version records its commit's
    signer, and the source shows ``SourceVerified=True``. Not ``verifying``: a ``SourceVerified`` left from
    when verification was on is dropped, so it never speaks for commits nobody checked. ``fence``: serve's
    leader check, first in the transaction (:meth:`controller.store.leadership.Leadership.fence`).
    """
    if fence is not None:
        fence(conn)
    current = read_source(conn, meta.name)
    if current.last_attempted_commit != plan.base:
        raise ConflictError(
            f"source {meta.name!r} moved to {current.last_attempted_commit} while this pass planned from "
            f"{plan.base}; run the pass again"
        )
    with bulk_loading():  # thousands of rows on a first sync: no collections rescanning the plan meanwhile
        ids = _write_workflows(conn, plan, now)
        texts = {n: json_texts(op) for n, op in enumerate(plan.ops) if isinstance(op, VersionOp)}
        _insert_versions(conn, plan, ids, now, verified.signers if verified else {}, texts)
        _insert_audit(conn, plan, ids, texts)
        _update_source(conn, meta, current.id, current.conditions, plan.head.sha, now,
                       verified.summary() if verified else None, verifying)


def _write_workflows(conn: Connection, plan: Plan, now: datetime) -> dict[str, int]:
    """Every touched workflow's row as the plan leaves it; key -> id.

    Existing rows are updated and new ones inserted as they end (not inserted blank, then updated:
    a first sync writes each row once), one executemany each, the ids coming back by RETURNING.
    """
    keys = sorted(plan.outcome)
    existing = _ids(conn, keys)
    changed: list[dict[str, Any]] = []
    new: list[dict[str, Any]] = []
    for key in keys:
        w = plan.outcome[key]
        wid, previous = existing.get(key, (None, []))
        row = {
            "path": w.path, "version": w.version, "content_hash": w.content_hash, "enabled": w.enabled,
            "trigger_type": w.trigger_type, "calls": list(w.calls), "deleted": w.deleted, "sync": w.sync,
            "message": w.message, "conditions": conditions.for_workflow(previous, now, w.sync, w.message, w.version),
            "last_applied_commit": w.last_applied_commit, "blocked_commit": w.blocked_commit,
            "last_attempted_commit": plan.attempted.get(key, w.last_applied_commit), "updated_at": now,
        }
        if wid is None:
            new.append({"key": key, "account": w.account, "name": w.name, "created_at": now, **row})
        else:
            changed.append({"b_id": wid, **row})
    ids = {key: wid for key, (wid, _) in existing.items()}
    if changed:
        # executemany: SET takes the row keys that name columns; WHERE binds "b_id".
        conn.execute(update(workflows).where(workflows.c.id == bindparam("b_id")), changed)
    if new:
        ids.update({key: wid for key, wid in conn.execute(insert(workflows).returning(workflows.c.key, workflows.c.id),
                                                          new)})
    return ids


def _ids(conn: Connection, keys: list[str]) -> dict[str, tuple[int, list[Any]]]:
    found: dict[str, tuple[int, list[Any]]] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        rows = conn.execute(select(workflows.c.key, workflows.c.id, workflows.c.conditions).where(workflows.c.key.in_(chunk)))
        found.update({key: (wid, list(conds)) for key, wid, conds in rows})
    return found


def _insert_versions(conn: Connection, plan: Plan, ids: Mapping[str, int], now: datetime,
                     signers: Mapping[str, Verdict], texts: Mapping[int, tuple[str, str]]) -> None:
    rows = [
        {"workflow_id": ids[op.key], "version": op.version, "commit": op.commit.sha, "author": op.commit.author,
         "author_email": op.commit.author_email, "committed_at": op.commit.committed_at, "summary": op.commit.summary,
         "path": op.path, "content_text": texts[n][0], "content_hash": op.content_hash, "source_text": op.source_text,
         "restored_from": op.restored_from, "created_at": now, **_signer(signers.get(op.commit.sha))}
        for n, op in enumerate(plan.ops)
        if isinstance(op, VersionOp)
    ]
    if rows:
        content = _json_text(conn, workflow_versions.c.content, "content_text")
        conn.execute(insert(workflow_versions).values(content=content), rows)


def _signer(verdict: Verdict | None) -> dict[str, str | None]:
    """The version's signer columns: set only when its own commit was verified (with ``head``, the head's)."""
    if verdict is None:
        return {"signer": None, "signing_key": None}
    return {"signer": verdict.signer or None, "signing_key": verdict.key or None}


def _insert_audit(conn: Connection, plan: Plan, ids: Mapping[str, int], texts: Mapping[int, tuple[str, str]]) -> None:
    rows = [{**_audit_row(op, ids[op.key]), "changes_text": texts[n][1] if n in texts else "[]"}
            for n, op in enumerate(plan.ops) if not isinstance(op, BlockedOp) or op.new]
    if rows:
        changes = _json_text(conn, audit_events.c.changes, "changes_text")
        conn.execute(insert(audit_events).values(changes=changes), rows)


def _audit_row(op: VersionOp | DeleteOp | InvalidOp | BlockedOp, workflow_id: int) -> dict[str, Any]:
    """The audit event of one operation; its ``changes`` (a version's) are written as :func:`json_texts` has them."""
    row = {"workflow_id": workflow_id, "at": op.commit.committed_at, "actor": _actor(op.commit),
           "version": op.version, "commit": op.commit.sha, "message": op.commit.summary}
    if isinstance(op, VersionOp):
        message = f"restored from version {op.restored_from}: " if op.restored_from else ""
        return {**row, "action": op.action, "message": message + op.commit.summary}
    if isinstance(op, DeleteOp):
        return {**row, "action": "deleted"}
    if isinstance(op, BlockedOp):
        return {**row, "action": "blocked", "message": op.message}
    return {**row, "action": "invalid", "message": "; ".join(str(p) for p in op.problems)}


def json_texts(op: VersionOp) -> tuple[str, str]:
    """The JSON texts of a version's content and of its audit event's changes, each value serialised once.

    The same text the JSON columns' own serialiser (``json.dumps``) writes. A version made from nothing
    (a first sync: old ``None`` at each top-level key) has the content's top-level values as its
    changes: those are serialised for the content already, and reused (half of a cold sync's JSON).
    """
    content = op.content
    if not all(isinstance(key, str) for key in content):
        return json.dumps(content), json.dumps(op.changes)
    pieces = {key: json.dumps(value) for key, value in content.items()}
    content_text = "{" + ", ".join(f"{json.dumps(key)}: {text}" for key, text in pieces.items()) + "}"
    changes = []
    for change in op.changes:
        path = change["path"]
        if change["old"] is None and path in pieces and change["new"] is content[path] and len(change) == 3:
            changes.append(f'{{"path": {json.dumps(path)}, "old": null, "new": {pieces[path]}}}')
        else:
            changes.append(json.dumps(change))
    return content_text, "[" + ", ".join(changes) + "]"


def _json_text(conn: Connection, column: Column[Any], name: str) -> ColumnElement[Any]:
    """A JSON ``column``'s value bound as the text ``name`` holds (serialised here, not again per row).

    PostgreSQL casts the text to the column's type (jsonb); SQLite stores JSON as text as it is (a
    cast there would give the text numeric affinity).
    """
    text = bindparam(name, type_=Text())
    return cast(text, column.type) if conn.dialect.name == "postgresql" else text


def _actor(commit: CommitInfo) -> str:
    return f"{commit.author} <{commit.author_email}>"


def _update_source(conn: Connection, meta: SourceMeta, source_id: int | None, previous: list[Any], head: str,
                   now: datetime, verified: str | None, verifying: bool) -> None:
    not_ready = [
        key for key, in conn.execute(
            select(workflows.c.key).where(workflows.c.deleted.is_(False), workflows.c.sync != "Synced").order_by(workflows.c.key)
        )
    ]
    marked = conditions.for_source(previous, now, head, not_ready)
    if verified is not None:
        marked = conditions.verified(marked, now, verified)
    elif not verifying:
        marked = [c for c in marked if c["type"] != "SourceVerified"]
    values = {"location": meta.location, "branch": meta.branch, "root": meta.root, "last_attempted_commit": head,
              "last_applied_commit": head, "conditions": marked, "updated_at": now}
    if source_id is None:
        conn.execute(insert(sources).values(name=meta.name, **values))
    else:
        conn.execute(update(sources).where(sources.c.id == source_id).values(**values))
