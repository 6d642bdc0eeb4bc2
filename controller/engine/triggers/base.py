"""The contract between admission, the dry run and the trigger-kind modules.

Each trigger type of the model has a module here, like the action modules: it owns the shape of
the ``trigger.*`` payload its executions see, which record (if any) the execution is about, and
the payload a dry run or ``wfctl check`` gives it. The functions that turn an event into a
:class:`~controller.engine.admission.Request` (``record.fire``, ``inactivity.scan``, ...) live in
the same module as the shape they build.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Given:
    """What a dry run or a test case hands a trigger instead of a real event."""

    record: dict[str, Any] | None = None
    payload: Any = None  # trigger.body (webhook, manual)
    email: Mapping[str, Any] | None = None  # the inbound message's fields
    now: datetime | None = None
    # Made-up data for a value nobody gave (``wfctl check`` of a workflow without tests); None: none.
    synthetic: Callable[[str], Any] | None = None


class TriggerModule(Protocol):
    TYPE: str

    def record_ref(self, trigger: Mapping[str, Any]) -> dict[str, str] | None:
        """``{"type", "id"}`` of the record an execution with this payload is about, or None.

        The scope's ``record`` is that record (read afresh before each segment of a run).
        """
        ...

    def sample(self, spec: Mapping[str, Any], given: Given) -> dict[str, Any]:
        """The ``trigger.*`` payload of a dry run of a workflow whose trigger is ``spec``."""
        ...


def record_ref_of(entity: str, record: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The reference to ``record`` of type ``entity`` (None without a record or an id)."""
    if not record or record.get("id") is None:
        return None
    return {"type": entity, "id": str(record["id"])}
