"""``if``: evaluate the condition (already resolved to a value) and pick ``then`` or ``else``."""

from __future__ import annotations

from typing import Any

from controller.engine.actions.base import ActionContext, Branch, Outcome


def run(inputs: dict[str, Any], ctx: ActionContext) -> Outcome:
    value = inputs["condition"]
    if isinstance(value, str):  # a condition mixing text and placeholders renders to text
        value = value.strip().lower() not in ("", "false", "0", "no", "none")
    return Branch("then", {"branch": "then", "condition": True}) if value else Branch(
        "else", {"branch": "else", "condition": False})
