"""``channel.post``: a message to a chat channel through its incoming webhook (Slack-compatible)."""

from __future__ import annotations

from typing import Any

from controller.engine.actions.base import ActionContext, Done, Outcome
from controller.errors import ExecutionError


def run(inputs: dict[str, Any], ctx: ActionContext) -> Outcome:
    """Post ``text`` to the channel; the output is ``{"status": <HTTP status>}``."""
    channel = ctx.lookup(str(inputs["channel"]), "channel")
    text = "" if inputs.get("text") is None else str(inputs["text"])
    if not text.strip():
        # Chat services reject an empty message; say so here rather than relay their 400.
        raise ExecutionError(f"text is empty; nothing to post to {channel.ref}")
    return Done(ctx.effects.post_channel(ctx.account, channel, {"text": text}, ctx.idempotency_headers()))
