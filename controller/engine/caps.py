"""The size cap on what a step keeps: its resolved input and its output, and an execution's output.

The interpreter passes each through :func:`capped` before it is stored or put into scope, so the live
engine, a resumed execution and the dry run see the same thing. A value whose JSON is at most
``STORED_LIMIT`` bytes is kept as it is. A larger map keeps its keys: its largest values are replaced,
one at a time, by a marker until the rest fits (so ``steps.call.output.status`` still reads 200 when
the body was too big to keep); anything else is replaced whole. The marker::

    {"truncated": true, "size": 3145728, "limit": 262144, "preview": "{\\"items\\": [1, 2, …"}

``size`` is the value's JSON in bytes, ``limit`` the cap, ``preview`` the first ``PREVIEW`` characters
of that JSON. The action itself always gets the whole input; only the copy that is kept is capped.
"""

from __future__ import annotations

import json
from typing import Any

STORED_LIMIT = 256 * 1024  # bytes of JSON kept of a step's input, of its output, of an execution's output
PREVIEW = 1024  # characters of a cut value's JSON kept in its marker


def capped(value: Any, limit: int = STORED_LIMIT) -> Any:
    """``value`` when its JSON fits in ``limit`` bytes, else the same map with its largest values cut, or a marker."""
    if _surely_fits(value, limit):  # (most values are small: no need to write their JSON to know it)
        return value
    text = _json(value)
    size = _bytes(text)
    if size <= limit:
        return value
    if not isinstance(value, dict):
        return _marker(text, size, limit)
    texts = {key: _json(item) for key, item in value.items()}  # each value serialised once, for size and preview
    sizes = {key: _bytes(part) for key, part in texts.items()}
    kept = dict(value)
    total = size
    for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
        cut = _marker(texts[key], sizes[key], limit)
        kept[key] = cut
        total += _bytes(_json(cut)) - sizes[key]
        if total <= limit:
            return kept
    return _marker(text, size, limit)  # too many keys to keep even with every value cut


def _surely_fits(value: Any, limit: int) -> bool:
    """True when ``value``'s JSON is sure to be at most ``limit`` bytes, by a bound worked out without writing
    it: a character of text takes at most 6 bytes (``\\u001f``), a number at most 24; False when the bound is
    larger, or for anything but plain JSON data (then the JSON itself is measured)."""
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            total += 6 * len(item) + 2
        elif item is None or kind is bool or kind is float or (kind is int and -10**15 < item < 10**15):
            total += 24
        elif kind is dict:
            total += 2 + 4 * len(item)
            for key in item:
                if type(key) is not str:
                    return False
                total += 6 * len(key) + 2
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            total += 2 + 2 * len(item)
            stack.extend(item)
        else:
            return False
        if total > limit:
            return False
    return True


def _marker(text: str, size: int, limit: int) -> dict[str, Any]:
    """What stands for a value too big to keep, from its JSON ``text``."""
    return {"truncated": True, "size": size, "limit": limit, "preview": text[:PREVIEW]}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _bytes(text: str) -> int:
    return len(text.encode("utf-8"))
