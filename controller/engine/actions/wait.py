"""``wait``: pause the execution durably; the wake-up time is stored, so a restart loses nothing."""

from __future__ import annotations

from typing import Any

from controller.engine.actions.base import ActionContext, Outcome, Sleep
from controller.model import parse_duration


def run(inputs: dict[str, Any], ctx: ActionContext) -> Outcome:
    return Sleep(parse_duration(inputs["duration"]))
