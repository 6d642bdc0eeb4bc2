"""``manual``: someone pressed "Run workflow" on a record (``wfctl run``, the API's run).

``trigger``: ``{"type": "manual", "source": "run", "input": {}, "record"?, "body"?}``. A run on
request has no caller, so its input is empty: ``trigger.input.x | default(…)`` works. The
execution is about the record it was run on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from controller.engine.triggers.base import Given, record_ref_of

TYPE = "manual"


def on_request(kind: str, record: Mapping[str, Any] | None, body: Any, *, source: str = "run",
               synthetic: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """The payload of a run someone asked for (manual, or a webhook workflow run by hand)."""
    trigger: dict[str, Any] = {"type": kind, "source": source}
    if body is None and synthetic is not None:
        body = synthetic("trigger.body")
    if body is not None:
        trigger["body"] = body
    trigger["input"] = synthetic("trigger.input") if synthetic is not None else {}
    if record is not None:
        trigger["record"] = record
    return trigger


def payload(record: Mapping[str, Any] | None, body: Any = None) -> dict[str, Any]:
    return on_request(TYPE, record, body)


def record_ref(trigger: Mapping[str, Any]) -> dict[str, str] | None:
    record = trigger.get("record")
    return record_ref_of(str(record.get("type") or ""), record) if record else None


def sample(spec: Mapping[str, Any], given: Given) -> dict[str, Any]:
    return on_request(TYPE, given.record, given.payload, source="dry-run", synthetic=given.synthetic)
