"""Flux-style conditions for sources and workflows (pure).

Each object carries the four condition types ``Ready``, ``Reconciling``, ``Stalled`` and
``Blocked``, each with ``status`` ("True"/"False"), ``reason``, ``message`` and
``lastTransitionTime`` (kept while the status stays the same, as Kubernetes does).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

TYPES = ("Ready", "Reconciling", "Stalled", "Blocked")

Condition = dict[str, Any]


def merge(previous: list[Condition], now: datetime, **states: tuple[bool, str, str]) -> list[Condition]:
    """New conditions from ``Type=(status, reason, message)``; unnamed types become False."""
    before = {c["type"]: c for c in previous}
    merged = []
    for kind in TYPES:
        status, reason, message = states.get(kind, (False, "", ""))
        text = "True" if status else "False"
        old = before.get(kind)
        since = old["lastTransitionTime"] if old and old["status"] == text else now.isoformat()
        merged.append({"type": kind, "status": text, "reason": reason, "message": message, "lastTransitionTime": since})
    return merged


def for_workflow(previous: list[Condition], now: datetime, sync: str, message: str, version: int) -> list[Condition]:
    if sync == "Synced":
        return merge(previous, now, Ready=(True, "Applied", f"version {version} is applied"))
    if sync == "Blocked":
        return merge(
            previous, now,
            Ready=(False, "ExecutionsInFlight", message),
            Reconciling=(True, "Progressing", "waiting for executions in flight to finish"),
            Blocked=(True, "ExecutionsInFlight", message),
        )
    kept = f"keeps version {version}" if version else "has no applied version"
    return merge(
        previous, now,
        Ready=(False, "ValidationFailed", f"{message} (the workflow {kept})"),
        Stalled=(True, "ValidationFailed", "fix the file and commit; nothing is retried until then"),
    )


def for_source(previous: list[Condition], now: datetime, head: str, not_ready: list[str]) -> list[Condition]:
    if not not_ready:
        return merge(previous, now, Ready=(True, "Succeeded", f"applied revision {head}"))
    shown = ", ".join(not_ready[:10]) + (f" and {len(not_ready) - 10} more" if len(not_ready) > 10 else "")
    return merge(
        previous, now,
        Ready=(False, "WorkflowsNotReady", f"revision {head} applied except {len(not_ready)} workflow(s): {shown}"),
    )


def source_failed(previous: list[Condition], now: datetime, reason: str, message: str) -> list[Condition]:
    return merge(previous, now, Ready=(False, reason, message), Stalled=(True, reason, message))


def reconciling(previous: list[Condition], now: datetime, head: str) -> list[Condition]:
    ready = next((c for c in previous if c["type"] == "Ready"), None)
    keep = (ready["status"] == "True", ready["reason"], ready["message"]) if ready else (False, "", "")
    return merge(previous, now, Ready=keep, Reconciling=(True, "Progressing", f"reconciling revision {head}"))
