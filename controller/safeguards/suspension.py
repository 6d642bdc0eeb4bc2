"""Suspensions: a workflow whose mailbox or channel went away is disabled by the controller at once.

Where it sits: the directory writers (``wfctl directory load|set-status``, the directory API) call
:func:`directory_changed` in the transaction that changes the directory; admission refuses the
triggers of a suspended workflow through the :func:`guard` it adds to its guards. A workflow
depends on the mailboxes and channels its current version names in typed reference fields (an
``email`` trigger's mailbox, ``email.send``'s mailbox, ``channel.post``'s channel), found with
:func:`controller.model.iter_refs`, never by searching text.

A suspension is a row in the store, not a change in git, so a sync never undoes it, and a new
version keeps it. It ends only with :func:`resume` (``wfctl resume``, the API), which is refused
while something the current version depends on is still unavailable. Each suspension and resume
is an audit event; a suspension also raises a ``suspended`` alert, sent to the account's sinks and
to the workflow's author (``metadata.owner``, else the author of its current version's commit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select

from controller.config import Config
from controller.errors import GuardError, NotFoundError
from controller.model.entries import DirectoryEntry
from controller.safeguards import alerts
from controller.store import directory as store_directory
from controller.store.tables import as_utc, audit_events, workflow_suspensions, workflow_versions, workflows

if TYPE_CHECKING:
    from controller.engine.admission import Request, Target

log = logging.getLogger(__name__)

WATCHED = ("mailbox", "channel")
ACTOR = "controller"
s = workflow_suspensions.c


def refs_of(content: Mapping[str, Any]) -> set[str]:
    """The mailbox and channel references of a normalized definition."""
    from controller.model import Workflow, iter_refs

    return {f"{kind}:{ref_id}" for _, kind, ref_id in iter_refs(Workflow.model_validate(content)) if kind in WATCHED}


def dependents(conn: Connection, account: str, refs: Iterable[str]) -> list[tuple[int, str, str, set[str]]]:
    """The account's workflows whose current version names any of ``refs``: (id, key, author e-mail, refs)."""
    wanted = set(refs)
    w, v = workflows.c, workflow_versions.c
    rows = conn.execute(select(w.id, w.key, v.content, v.author_email)
                        .join(workflow_versions, (v.workflow_id == w.id) & (v.version == w.version))
                        .where(w.account == account, w.deleted.is_(False)).order_by(w.key))
    found = []
    for workflow_id, key, content, author in rows:
        named = refs_of(content) & wanted
        if named:
            owner = (content.get("metadata") or {}).get("owner")
            found.append((workflow_id, key, str(owner or author or ""), named))
    return found


def directory_changed(conn: Connection, config: Config, account: str, before: Iterable[DirectoryEntry],
                      now: datetime) -> list[str]:
    """Suspend the workflows that depend on a mailbox or channel that stopped being active (or is
    gone) in this transaction's directory change; ``before`` is the directory as it was. Returns
    the keys it suspended."""
    was = {e.ref: e for e in before if e.kind in WATCHED}
    now_entries = {e.ref: e for e in store_directory.list_entries(conn, account) if e.kind in WATCHED}
    lost = {ref: (now_entries[ref].status if ref in now_entries else "removed from the directory")
            for ref, entry in was.items() if entry.active and not (ref in now_entries and now_entries[ref].active)}
    if not lost:
        return []
    already = set(conn.execute(select(s.workflow_id)).scalars())
    policy = config.alerts(account)
    suspended = []
    for workflow_id, key, author, named in dependents(conn, account, lost):
        if workflow_id in already:
            continue
        ref = min(named)
        reason = f"{ref} is {lost[ref]}"
        conn.execute(insert(workflow_suspensions), {"workflow_id": workflow_id, "ref": ref, "reason": reason,
                                                    "since": now})
        conn.execute(insert(audit_events), {"workflow_id": workflow_id, "at": now, "actor": ACTOR,
                                            "action": "suspended", "version": None, "commit": None, "changes": [],
                                            "message": f"suspended: {reason}; resume with `wfctl resume {key}`"})
        title, body = _suspended_text(key, reason)
        alert = alerts.record(conn, policy, alerts.Subject(workflow_id, key), "suspended", now, rule=None,
                              window_count=lambda: 1, details={"ref": ref, "reason": reason},
                              describe=_fixed(title, body))
        if alert is not None and author and "@" in author and config.smtp:
            alerts.notify_also(conn, alert, title, body, now, ({"type": "email", "to": [author]},))
        elif alert is not None and author:
            log.warning("%s suspended; its author %s is not notified: no notifications.smtp is configured", key,
                        author)
        suspended.append(key)
    if suspended:
        log.warning("suspended %s: %s", ", ".join(suspended), "; ".join(f"{r} is {why}" for r, why in lost.items()))
    return suspended


def set_status(conn: Connection, config: Config, account: str, ref: str, status: str,
               now: datetime) -> tuple[DirectoryEntry, list[str]]:
    """Change one directory entry's status and suspend what depended on it: the entry, the keys."""
    before = store_directory.list_entries(conn, account)
    entry = store_directory.set_status(conn, account, ref, status, now)
    return entry, directory_changed(conn, config, account, before, now)


def replace(conn: Connection, config: Config, account: str, entries: list[DirectoryEntry],
            now: datetime) -> tuple[dict[str, int], list[str]]:
    """Replace the account's directory and suspend what depended on an entry it lost or deactivated."""
    before = store_directory.list_entries(conn, account)
    counts = store_directory.replace_account(conn, account, entries, now)
    return counts, directory_changed(conn, config, account, before, now)


def guard(conn: Connection, target: Target, request: Request) -> str | None:
    """Admission guard: a suspended workflow starts nothing (the record timeline says why). The
    suspension is read with the target (``Target.suspended``), so this asks the store nothing."""
    if target.suspended is None:
        return None
    return f"{target.key} is suspended: {target.suspended}; reactivate it, then `wfctl resume {target.key}`"


def suspension(conn: Connection, workflow_id: int) -> dict[str, Any] | None:
    found = conn.execute(select(s.ref, s.reason, s.since).where(s.workflow_id == workflow_id)).first()
    if found is None:
        return None
    return {"ref": found.ref, "reason": found.reason, "since": as_utc(found.since).isoformat()}


def resume(conn: Connection, key: str, *, actor: str, now: datetime) -> dict[str, Any]:
    """End the suspension of ``key``; GuardError while what its current version needs is unavailable."""
    w, v = workflows.c, workflow_versions.c
    row = conn.execute(select(w.id, w.account, v.content)
                       .join(workflow_versions, (v.workflow_id == w.id) & (v.version == w.version))
                       .where(w.key == key, w.deleted.is_(False))).first()
    if row is None:
        raise NotFoundError(f"no workflow {key!r}; see `wfctl status`", workflow=key)
    current = suspension(conn, row.id)
    if current is None:
        raise GuardError(f"{key} is not suspended; nothing to resume", workflow=key)
    unavailable = []
    for ref in sorted(refs_of(row.content)):
        entry = store_directory.get(conn, row.account, ref)
        if entry is None or not entry.active:
            unavailable.append(f"{ref} is {entry.status if entry else 'not in the directory'}")
    if unavailable:
        raise GuardError(f"cannot resume {key}: {'; '.join(unavailable)}; make it active first "
                         f"(`wfctl directory set-status`)", workflow=key)
    conn.execute(delete(workflow_suspensions).where(s.workflow_id == row.id))
    conn.execute(insert(audit_events), {"workflow_id": row.id, "at": now, "actor": actor, "action": "resumed",
                                        "version": None, "commit": None, "changes": [],
                                        "message": f"resumed (was suspended: {current['reason']})"})
    alerts.resolve(conn, row.id, "suspended", now)
    log.info("%s resumed %s", actor, key)
    return {"workflow": key, "resumed": True, "was": current}


def _fixed(title: str, body: str) -> Callable[[dict[str, Any]], tuple[str, str]]:
    return lambda _alert: (title, body)


def _suspended_text(key: str, reason: str) -> tuple[str, str]:
    title = f"{key} is suspended: {reason}"
    body = (f"{title}. It starts nothing until it is resumed: make the reference active again (or commit a version "
            f"that does not use it), then run `wfctl resume {key}` or POST /api/v1/workflows/{key}/resume.")
    return title, body
