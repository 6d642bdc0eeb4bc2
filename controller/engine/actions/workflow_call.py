"""``workflow.call``: run another workflow of the account as a child execution and wait for it.

The step's output is the child's output (its ``vars`` at the end); a failed child fails the step.
"""

from __future__ import annotations

from typing import Any

from controller.engine.actions.base import ActionContext, Call, Outcome


def run(inputs: dict[str, Any], ctx: ActionContext) -> Outcome:
    return Call(inputs["workflow"], dict(inputs.get("input") or {}))
