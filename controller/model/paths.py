"""Field paths: the one spelling of a place in a workflow, ``spec.actions[2].duration``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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


def node_position(node: Any, loc: Loc) -> tuple[int, int]:
    """1-based line and column of the key (or list item) at ``loc`` in a round-trip-loaded tree,
    or of the deepest part of ``loc`` that exists there."""
    # Imported here: a tree of this kind exists only where the YAML loader was imported; a worker process,
    # which reads no YAML, keeps the model's paths without it.
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    line, col = 1, 1
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            if part not in node.lc.data:  # a key merged in by `<<`: placed at the map it was merged into
                break
            line, col = node.lc.key(part)
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, col = node.lc.item(part)
        else:
            break
        line, col = line + 1, col + 1
        node = node[part]
    return line, col
