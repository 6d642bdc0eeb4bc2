"""Flux-style conditions for sources and workflows (pure).

Each object carries the four condition types ``Ready``, ``Reconciling``, ``Stalled`` and
``Blocked``, each with ``status`` ("True"/"False"), ``reason``, ``message`` and
``lastTransitionTime`` (kept while the status stays the same, as Kubernetes does). A source that
verifies commits (``--verify-commits``) also carries ``SourceVerified``, as Flux's GitRepository does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

TYPES = ("Ready", "Reconciling", "Stalled", "Blocked")

Condition = dict[str, Any]


def merge(previous: list[Condition], now: datetime, **states: tuple[bool, str, str]) -> list[Condition]:
    """New conditions from ``Type=(status, reason, message)``; unnamed types of :data:`TYPES` become False,
    other types (``SourceVerified``) are kept as they were unless named."""
    before = {c["type"]: c for c in previous}
    stamp = now.isoformat()  # once, not per condition: a first sync merges 10,000 workflows' conditions
    merged = [_condition(kind, states.get(kind, (False, "", "")), before.get(kind), stamp) for kind in TYPES]
    extra = [kind for kind in [*before, *states] if kind not in TYPES]
    for kind in dict.fromkeys(extra):
        merged.append(_condition(kind, states[kind], before.get(kind), stamp) if kind in states else before[kind])
    return merged


def _condition(kind: str, state: tuple[bool, str, str], old: Condition | None, stamp: str) -> Condition:
    status, reason, message = state
    text = "True" if status else "False"
    since = old["lastTransitionTime"] if old and old["status"] == text else stamp
    return {"type": kind, "status": text, "reason": reason, "message": message, "lastTransitionTime": since}


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


def verified(previous: list[Condition], now: datetime, message: str) -> list[Condition]:
    """``SourceVerified=True``: the commits of the pass verified (the message names the head's signer)."""
    return merge(previous, now, **_kept(previous), SourceVerified=(True, "Succeeded", message))


def unverified(previous: list[Condition], now: datetime, reason: str, message: str, applied: str | None
               ) -> list[Condition]:
    """``SourceVerified=False`` and ``Ready=False``: a commit did not verify, nothing of it was applied.

    Not ``Stalled``: the controller keeps running the last verified state, and a signed push moves it on.
    """
    kept = f"; still running {applied[:12]}, the last applied revision" if applied else "; nothing is applied yet"
    return merge(previous, now, Ready=(False, reason, message + kept), SourceVerified=(False, reason, message))


def refused_head(previous: list[Condition], head: str) -> bool:
    """Whether ``SourceVerified=False`` already stands for this head (a pass over it again changes nothing)."""
    return any(c["type"] == "SourceVerified" and c["status"] == "False" and head[:12] in c["message"]
               for c in previous)


def _kept(previous: list[Condition]) -> dict[str, tuple[bool, str, str]]:
    return {c["type"]: (c["status"] == "True", c["reason"], c["message"]) for c in previous if c["type"] in TYPES}
