"""``set``: put values into ``vars`` for the steps after it. The output is what was set."""

from __future__ import annotations

from typing import Any

from controller.engine.actions.base import ActionContext, Done, Outcome


def run(inputs: dict[str, Any], ctx: ActionContext) -> Outcome:
    return Done(dict(inputs["vars"]))
