"""The contract between the interpreter and the action modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from controller.engine.directory import Directory
from controller.engine.effects import Effects
from controller.errors import ExecutionError
from controller.model.entries import DirectoryEntry


@dataclass(frozen=True)
class ActionContext:
    account: str
    workflow: str  # "<account>/<name>"
    action_id: str
    now: datetime
    directory: Directory
    effects: Effects
    execution_id: int | None = None
    idempotency_key: str | None = None  # the same for every attempt of this step (external effects)
    idempotency_header: str = "Idempotency-Key"  # the header that carries it; "" sends none

    def idempotency_headers(self) -> dict[str, str]:
        """The header a repeat-aware receiver reads, when this step has a key."""
        if not self.idempotency_key or not self.idempotency_header:
            return {}
        return {self.idempotency_header: self.idempotency_key}

    def lookup(self, ref: str, kind: str) -> DirectoryEntry:
        """The active directory entry ``ref`` names, or a step error that says what is wrong."""
        entry = self.directory.get(self.account, ref)
        if entry is None or entry.kind != kind:
            raise ExecutionError(f"{ref} is not in the directory of account {self.account!r}; load it with "
                                 f"`wfctl directory load`", failure="guard")
        if not entry.active:
            raise ExecutionError(f"{ref} is {entry.status}; reactivate it or change the workflow", failure="guard")
        return entry


@dataclass(frozen=True)
class Done:
    """The step finished with this output."""

    output: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` (durably), then the step is done."""

    seconds: int


@dataclass(frozen=True)
class Branch:
    """An ``if`` decided: run the ``then`` or the ``else`` list next."""

    taken: Literal["then", "else"]
    output: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """Start the workflow ``workflow`` (same account) as a child with ``input``; wait for it."""

    workflow: str
    input: dict[str, Any] = field(default_factory=dict)


Outcome = Done | Sleep | Branch | Call


class ActionModule(Protocol):
    def run(self, inputs: dict[str, Any], ctx: ActionContext) -> Outcome:
        """Act on the resolved ``inputs``; raise ExecutionError (TransientError to allow retry) on failure."""
        ...


def recorded_input(module: ActionModule, inputs: dict[str, Any]) -> dict[str, Any]:
    """What a step's trace keeps of its resolved ``inputs``: the module's ``recorded(inputs)`` when it
    has one (``http.request`` masks its secret headers there), else the inputs as they are."""
    recorded = getattr(module, "recorded", None)
    return recorded(inputs) if callable(recorded) else inputs
