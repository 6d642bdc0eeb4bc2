"""`wfctl executions show` in text: the trace as a tree of the workflow's actions, as they ran.

Each step shows its status, attempts, duration and wait, then its resolved input and output on their
own lines, cut to a width (``--json`` has everything). Colours only on a terminal, never with
``NO_COLOR`` set (https://no-color.org).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import click

WIDTH = 100  # characters of an input or output shown before the hint to use --json
_COLOURS = {"succeeded": "green", "failed": "red", "terminated": "red", "waiting": "yellow", "running": "cyan",
            "queued": "cyan"}


def colour_wanted() -> bool:
    return "NO_COLOR" not in os.environ and sys.stdout.isatty()


def render(execution: Mapping[str, Any], definition: Mapping[str, Any] | None, *, colour: bool) -> Iterator[str]:
    """The lines of the text trace; ``definition`` (the pinned version) gives the nesting of the steps."""
    def paint(text: str, status: str) -> str:
        return click.style(text, fg=_COLOURS.get(status)) if colour else text

    yield (f"execution {execution['id']} of {execution['workflow']} v{execution['version'] or '-'}: "
           + paint(execution["status"], execution["status"]) + (f" ({execution['error']})" if execution["error"] else ""))
    yield f"  trigger: {_short(execution['trigger'])}"
    steps = {s["action_id"]: s for s in execution["steps"]}
    shown: set[str] = set()
    actions = (definition or {}).get("spec", {}).get("actions") or []
    for depth, action_id in _walk(actions, 1):
        if action_id in steps:
            shown.add(action_id)
            yield from _step(steps[action_id], depth, paint)
    for action_id, step in steps.items():  # a step the definition does not name (should not happen)
        if action_id not in shown:
            yield from _step(step, 1, paint)


def _walk(actions: list[Mapping[str, Any]], depth: int) -> Iterator[tuple[int, str]]:
    for action in actions:
        yield depth, str(action["id"])
        for branch in ("then", "else"):
            yield from _walk(action.get(branch) or [], depth + 1)


def _step(step: Mapping[str, Any], depth: int, paint: Callable[[str, str], str]) -> Iterator[str]:
    pad = "  " * depth
    facts = [f"attempts={step['attempts']}"]
    duration = _duration(step["started_at"], step["finished_at"])
    if duration:
        facts.append(duration)
    if step["wait_seconds"] is not None:
        facts.append(f"waited={step['wait_seconds']}s")
    yield f"{pad}{step['action_id']} ({step['type']}) {paint(step['status'], step['status'])} " + " ".join(facts)
    if step["error"]:
        yield f"{pad}  error:  {step['error']}"
    if step["input"] is not None:
        yield f"{pad}  input:  {_short(_without(step['input'], ('id', 'type', 'then', 'else')))}"
    if step["output"] is not None:
        yield f"{pad}  output: {_short(step['output'])}"
    for lost in step.get("attempt_log") or []:
        yield f"{pad}  attempt {lost['attempt']}: {lost['outcome']} (key {step['idempotency_key']})"


def _without(value: Any, keys: tuple[str, ...]) -> Any:
    return {k: v for k, v in value.items() if k not in keys} if isinstance(value, dict) else value


def _short(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= WIDTH else text[: WIDTH - 1] + "… (cut; --json shows all)"


def _duration(started: str | None, finished: str | None) -> str:
    if not started or not finished:
        return ""
    ms = int((datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds() * 1000)
    return f"{ms}ms" if ms < 10_000 else f"{ms / 1000:.1f}s"
