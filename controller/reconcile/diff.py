"""Field-level differences between two normalized definitions (pure).

Paths read like the YAML: ``spec.trigger.cron``, and list items that carry an ``id`` (actions) are
addressed by it, ``spec.actions[mail-lead].subject``, so a change reads the same however the list
was reordered around it. A change of order alone is reported on the list itself.
"""

from __future__ import annotations

from typing import Any, TypedDict


class FieldChange(TypedDict):
    path: str
    old: Any
    new: Any


def field_changes(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    """Every leaf that differs between ``old`` and ``new``; ``None`` on a side means absent."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[FieldChange] = []
        for key in sorted(set(old) | set(new), key=str):
            changes += field_changes(old.get(key), new.get(key), _join(path, str(key)))
        return changes
    if _by_id(old) and _by_id(new):
        return _list_changes(old, new, path)
    return [{"path": path, "old": old, "new": new}]


def _list_changes(old: list[dict[str, Any]], new: list[dict[str, Any]], path: str) -> list[FieldChange]:
    old_ids = [item["id"] for item in old]
    new_ids = [item["id"] for item in new]
    before = dict(zip(old_ids, old))
    after = dict(zip(new_ids, new))
    changes: list[FieldChange] = []
    for item_id in new_ids:
        changes += field_changes(before.get(item_id), after[item_id], f"{path}[{item_id}]")
    for item_id in old_ids:
        if item_id not in after:
            changes.append({"path": f"{path}[{item_id}]", "old": before[item_id], "new": None})
    kept_old = [i for i in old_ids if i in after]
    kept_new = [i for i in new_ids if i in before]
    if kept_old != kept_new:
        changes.append({"path": path, "old": old_ids, "new": new_ids})
    return changes


def _by_id(value: Any) -> bool:
    """A list whose items are mappings with distinct ids is compared item by item."""
    if not isinstance(value, list) or not value:
        return isinstance(value, list)
    ids = [item.get("id") if isinstance(item, dict) else None for item in value]
    return None not in ids and len(set(ids)) == len(ids)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
