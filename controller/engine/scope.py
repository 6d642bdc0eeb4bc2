"""The template scope of an execution, built in one place for every path that evaluates templates.

The live engine (a trigger's ``when`` at admission, every step of a run), the dry run and
``wfctl check`` all call :func:`build`; they differ only in what they pass (a real record or a
made-up one, a real execution id or none), never in the names a template can use. A test runs
the example workflows through the live and the check path and compares the scopes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from controller.engine.templating import Templates, truthy
from controller.errors import TemplateError

NAMES = ("record", "trigger", "steps", "vars", "account", "workflow", "now", "execution")
"""Every name a ``{{ … }}`` placeholder can start with."""


def build(*, workflow: str, version: int | None, trigger: Mapping[str, Any], record: Mapping[str, Any] | None,
          now: datetime, execution: Mapping[str, Any] | None = None,
          steps: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The scope of workflow ``workflow`` (``ACCOUNT/NAME``) at ``version`` for one trigger."""
    account, _, name = workflow.partition("/")
    return {
        "record": record,
        "trigger": trigger,
        "steps": dict(steps or {}),
        "vars": {},
        "account": account,
        "workflow": {"id": workflow, "name": name, "account": account, "version": version},
        "now": now.isoformat(),
        "execution": dict(execution or {"id": None}),
    }


class When(NamedTuple):
    started: bool
    reason: str = ""  # why not
    broken: bool = False  # the condition could not be evaluated (a template error), rather than false


def trigger_when(templates: Templates, trigger_spec: Mapping[str, Any], *, workflow: str, version: int | None,
                 trigger: Mapping[str, Any], now: datetime, record: Mapping[str, Any] | None = None,
                 execution: Mapping[str, Any] | None = None) -> When:
    """The trigger's ``when`` over the scope the run would have (``record``: the trigger's own unless given):
    the one function admission, the impact preview's replay (:mod:`controller.check.replay`) and the dry run
    of test cases call."""
    if not trigger_spec.get("when"):
        return When(True)
    scope = build(workflow=workflow, version=version, trigger=trigger,
                  record=trigger.get("record") if record is None else record, now=now, execution=execution)
    return when(templates, trigger_spec, scope)


def when(templates: Templates, trigger_spec: Mapping[str, Any], scope: Mapping[str, Any]) -> When:
    """Whether the trigger's ``when`` lets this trigger start the workflow, and if not, why."""
    condition = trigger_spec.get("when")
    if not condition:
        return When(True)
    try:
        value = templates.evaluate(condition, scope)
    except TemplateError as e:
        return When(False, f"the trigger's when could not be evaluated: {e}", broken=True)
    if truthy(value):
        return When(True)
    return When(False, f"when {condition!r} is false")
