"""``if``: evaluate the condition (already resolved to a value) and pick ``then`` or ``else``."""

from __future__ import annotations

from typing import Any

from controller.engine.actions.base import ActionContext, Branch, Outcome
from controller.engine.templating import truthy


def run(inputs: dict[str, Any], ctx: ActionContext) -> Outcome:
    if truthy(inputs["condition"]):
        return Branch("then", {"branch": "then", "condition": True})
    return Branch("else", {"branch": "else", "condition": False})
