"""Trigger kinds, one module each (like ``engine/actions``): payload shape, record, dry-run payload.

``record`` (a record created, updated or deleted), ``inactivity`` (records quiet for ``after``),
``email`` (inbound mail to a shared mailbox), ``schedule`` (fired by
:mod:`controller.engine.scheduler`), ``manual`` and ``webhook`` (started on request, or by
signed intake), and ``call`` (a ``workflow.call`` child). Every one hands its executions to
admission in the caller's transaction, so an event and the executions it starts commit together.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.engine.triggers import email, inactivity, manual, record, schedule, webhook
from controller.engine.triggers.base import TriggerModule

MODULES: Mapping[str, TriggerModule] = {
    module.TYPE: module  # type: ignore[misc]
    for module in (record, schedule, webhook, manual, inactivity, email)
}
"""The module of every trigger type of the model (a test keeps this equal to the model's list)."""


def module(trigger_type: str) -> TriggerModule:
    return MODULES[trigger_type]


ON_REQUEST = frozenset({"manual", "call"})
"""Kinds of trigger input that start a workflow whatever its own trigger says (a run asked for, a call)."""


def listens(spec: Mapping[str, Any], trigger: Mapping[str, Any]) -> bool:
    """Whether a workflow whose trigger is ``spec`` is started by the trigger input ``trigger`` at all, before its
    ``when``: the type, and the matching the listeners do (entity and events, mailbox)."""
    kind = trigger.get("type")
    if kind in ON_REQUEST:
        return True
    if spec.get("type") != kind:
        return False
    match = getattr(MODULES[str(kind)], "listens", None)
    return match is None or bool(match(spec, trigger))
