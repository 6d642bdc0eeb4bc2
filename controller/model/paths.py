"""Field paths: the one spelling of a place in a workflow, ``spec.actions[2].duration``."""

from __future__ import annotations

from collections.abc import Iterable

Loc = tuple[str | int, ...]
"""A place in the raw YAML data: mapping keys and list indices, outermost first."""


def field_path(loc: Iterable[str | int]) -> str:
    """``('spec', 'actions', 2, 'duration')`` -> ``spec.actions[2].duration``; ``()`` -> ``""``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
