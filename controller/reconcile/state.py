"""Reading the applied state a pass plans against (store -> plain values for the planner).

Only what a pass needs: the source's bookkeeping row, every workflow row of the accounts a pass
touches, and, for the workflows it changes, the newest content and the content hashes of earlier
versions (for field-level diffs and restore detection). A one-file sync reads one account.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, and_, func, select

from controller.model.statuses import IN_FLIGHT, ordered
from controller.reconcile.plan import AppliedWorkflow
from controller.store.tables import executions, sources, workflow_versions, workflows


@dataclass(frozen=True)
class SourceState:
    id: int | None
    last_attempted_commit: str | None
    last_applied_commit: str | None
    conditions: list[dict[str, Any]]


def read_source(conn: Connection, name: str) -> SourceState:
    row = conn.execute(select(sources).where(sources.c.name == name)).mappings().first()
    if row is None:
        return SourceState(None, None, None, [])
    return SourceState(row["id"], row["last_attempted_commit"], row["last_applied_commit"], list(row["conditions"]))


def read_applied(conn: Connection, accounts: Iterable[str] | None) -> dict[str, AppliedWorkflow]:
    """Workflow rows (deleted ones too) of these accounts, or of all accounts when None."""
    query = select(*_APPLIED_COLUMNS)  # not every column: the rows' JSON conditions cost more than the rest
    if accounts is not None:
        query = query.where(workflows.c.account.in_(sorted(set(accounts))))
    return {row["key"]: _applied(row) for row in conn.execute(query).mappings()}


def with_history(conn: Connection, applied: dict[str, AppliedWorkflow], keys: Iterable[str]) -> dict[str, AppliedWorkflow]:
    """Add the newest content and the version hashes to the workflows ``keys`` names."""
    wanted = sorted(k for k in set(keys) if k in applied)
    if not wanted:
        return applied
    versions = workflow_versions.c
    # A long IN list costs more than reading everything (a first sync wants all of it anyway).
    only = workflows.c.key.in_(wanted) if len(wanted) <= 500 else workflows.c.key.is_not(None)
    hashes: dict[str, dict[str, int]] = {}
    rows = conn.execute(
        select(workflows.c.key, versions.content_hash, func.max(versions.version))
        .join(workflows, versions.workflow_id == workflows.c.id)
        .where(only)
        .group_by(workflows.c.key, versions.content_hash)
    )
    for key, content_hash, version in rows:
        hashes.setdefault(key, {})[content_hash] = version
    latest = conn.execute(
        select(workflows.c.key, versions.content)
        .join(workflows, and_(versions.workflow_id == workflows.c.id, versions.version == workflows.c.version))
        .where(only)
    )
    contents = {key: content for key, content in latest}
    result = dict(applied)
    for key in wanted:
        result[key] = replace(applied[key], content=contents.get(key), hashes=hashes.get(key, {}))
    return result


def read_blocked(conn: Connection) -> dict[str, str]:
    """Workflows whose restore is held back: key -> the commit it waits at."""
    w = workflows.c
    return {key: commit for key, commit in conn.execute(select(w.key, w.blocked_commit).where(w.blocked_commit.is_not(None)))}


def in_flight(conn: Connection, keys: Iterable[str] | None) -> dict[str, list[int]]:
    """Running or waiting execution ids per workflow key (a restore of these is held back)."""
    e = executions.c
    query = select(e.workflow_key, e.id).where(e.status.in_(ordered(IN_FLIGHT))).order_by(e.id)
    if keys is not None:
        query = query.where(e.workflow_key.in_(sorted(set(keys))))
    found: dict[str, list[int]] = {}
    for key, execution_id in conn.execute(query):
        found.setdefault(key, []).append(execution_id)
    return found


_APPLIED_COLUMNS = tuple(workflows.c[name] for name in (
    "key", "path", "version", "content_hash", "calls", "deleted", "sync", "message", "enabled", "trigger_type",
    "last_applied_commit", "blocked_commit"))


def _applied(row: Any) -> AppliedWorkflow:
    return AppliedWorkflow(
        key=row["key"],
        path=row["path"],
        version=row["version"],
        content_hash=row["content_hash"],
        calls=tuple(row["calls"]),
        deleted=row["deleted"],
        sync=row["sync"],
        message=row["message"],
        enabled=row["enabled"],
        trigger_type=row["trigger_type"],
        last_applied_commit=row["last_applied_commit"],
        blocked_commit=row["blocked_commit"],
    )

