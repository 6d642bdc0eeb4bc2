"""Made-up records for dry runs of workflows that ship no test cases.

Common fields get plausible values; any other field a template asks for reads as a placeholder
naming it (``‹record.reporter.name›``), so a dry run still shows what the steps would do.
"""

from __future__ import annotations

from typing import Any, Self

_COMMON: dict[str, Any] = {
    "id": "1", "title": "Example", "name": "Example", "status": "open", "priority": "urgent",
    "email": "someone@example.com", "first_name": "Sam", "last_name": "Example", "company": "Example Inc.",
    "stage": "qualified", "kind": "renewal", "owner_id": "u_example", "description": "A synthetic record.",
    "assignee": {"name": "Assignee Example", "email": "assignee@example.com"},
    "owner": {"name": "Owner Example", "email": "owner@example.com"},
    "reporter": {"name": "Reporter Example", "email": "reporter@example.com"},
}


class Placeholder(str):
    """Text that stands for a field nobody gave; any deeper field is a placeholder too."""

    def __new__(cls, path: str) -> Self:
        return super().__new__(cls, f"\u2039{path}\u203a")

    def __getattr__(self, name: str) -> Placeholder:
        if name.startswith("_"):
            raise AttributeError(name)
        return Placeholder(f"{self._path}.{name}")

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return Placeholder(f"{self._path}.{key}")
        if isinstance(key, int):
            return Placeholder(f"{self._path}[{key}]")
        return str.__getitem__(self, key)

    @property
    def _path(self) -> str:
        return str.__getitem__(self, slice(1, -1))

    # Made-up data compares as "unknown": false against numbers instead of failing the dry run.
    def __lt__(self, other: object) -> bool:
        return str.__lt__(self, other) if isinstance(other, str) else False

    def __le__(self, other: object) -> bool:
        return str.__le__(self, other) if isinstance(other, str) else False

    def __gt__(self, other: object) -> bool:
        return str.__gt__(self, other) if isinstance(other, str) else False

    def __ge__(self, other: object) -> bool:
        return str.__ge__(self, other) if isinstance(other, str) else False

    __hash__ = str.__hash__


class SyntheticRecord(dict[str, Any]):
    """A record whose missing fields read as placeholders instead of failing the dry run."""

    def __init__(self, data: dict[str, Any], path: str = "record"):
        super().__init__(data)
        self._path = path

    def __missing__(self, key: str) -> Placeholder:
        return Placeholder(f"{self._path}.{key}")


def synthetic_record(entity: str) -> dict[str, Any]:
    return SyntheticRecord({**_COMMON, "type": entity, "title": f"Example {entity}"})


def synthetic_data(path: str) -> dict[str, Any]:
    """A payload, call input or response body nobody gave: every field is a placeholder."""
    return SyntheticRecord({}, path)
