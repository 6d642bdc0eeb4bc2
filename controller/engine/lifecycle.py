"""The one way out: every status change of an execution, and what runs whenever one happens.

``queued -> running -> (waiting <-> running) -> succeeded | failed | terminated``. The interpreter
and the engine change an execution's status only through :func:`transition`, which checks the
move against :data:`ALLOWED`, stamps the times and remembers the move on the row. When the row is
written (:meth:`Lifecycle.save`, the only writer of an execution's status), the after-hooks run
for each remembered move in that same transaction: a hook sees the move exactly once, and never
for a change that did not commit.

Hooks are plain functions ``hook(conn, execution, transition)``. The engine registers the parent
wake-up (a finished child completes its parent's ``workflow.call`` step); metrics rollups and
alerts register here too, instead of being copied to each place an execution can end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from controller.engine import queue
from controller.model.statuses import FINAL, ExecutionStatus, Failure

if TYPE_CHECKING:
    from controller.engine.queue import ExecutionRow

S = ExecutionStatus

ALLOWED: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    S.QUEUED: frozenset({S.RUNNING, S.FAILED, S.TERMINATED}),
    # running -> running: resumed by another worker after a stop or an expired lease.
    S.RUNNING: frozenset({S.RUNNING, S.WAITING, S.SUCCEEDED, S.FAILED, S.TERMINATED}),
    S.WAITING: frozenset({S.RUNNING, S.FAILED, S.TERMINATED}),
}


class LifecycleError(RuntimeError):
    """A move the lifecycle does not allow (a bug in the engine, never a user's mistake)."""


@dataclass(frozen=True)
class Transition:
    execution_id: int
    before: ExecutionStatus
    after: ExecutionStatus
    at: datetime
    reason: str | None = None

    @property
    def final(self) -> bool:
        return self.after in FINAL


Hook = Callable[[Connection, "ExecutionRow", Transition], None]


def transition(ex: ExecutionRow, to: ExecutionStatus, at: datetime, *, error: str | None = None,
               failure: str | None = None, wake_at: datetime | None = None) -> Transition:
    """Move ``ex`` to ``to`` in memory; the move commits (and its hooks run) with the next save.

    ``error`` is the reason of a failure or termination and ``failure`` its class (a
    :class:`~controller.model.statuses.Failure`); ``wake_at`` when a waiting execution becomes
    runnable again (None: when something else wakes it, a finished child). The time spent waiting
    is added up here, so that metrics can tell waiting from working.
    """
    before = S(ex.status)
    if to not in ALLOWED.get(before, frozenset()):
        raise LifecycleError(f"execution {ex.id} cannot go from {before} to {to}")
    if before == S.WAITING and ex.waiting_since is not None:
        ex.waited_seconds += max(0.0, (at - ex.waiting_since).total_seconds())
        ex.waiting_since = None
    ex.status = to
    if to == S.RUNNING:
        ex.started_at = ex.started_at or at
        ex.wake_at = None
    elif to == S.WAITING:
        ex.wake_at, ex.waiting_since = wake_at, at
    else:  # final
        ex.error, ex.finished_at, ex.wake_at = error, at, None
        ex.failure = None if to == S.SUCCEEDED else failure or Failure.INTERNAL
    move = Transition(ex.id, before, to, at, error)
    ex.transitions.append(move)
    return move


class Lifecycle:
    """Writes executions and runs the after-hooks of their moves; one per engine."""

    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        self.hooks: list[Hook] = list(hooks)

    def register(self, hook: Hook) -> None:
        """Run ``hook`` after every transition, in the transaction that commits it."""
        self.hooks.append(hook)

    def save(self, conn: Connection, ex: ExecutionRow, now: datetime, *, release: bool) -> None:
        """Write the execution and its changed steps, then run the hooks of its pending moves."""
        self.save_all(conn, [ex], now, release=release)

    def save_all(self, conn: Connection, batch: list[ExecutionRow], now: datetime, *, release: bool) -> None:
        """Write the executions and their changed steps, then run the hooks of their pending moves (each
        hook sees every row of the batch written)."""
        queue.save_all(conn, batch, now, release=release)
        for ex in batch:
            moves, ex.transitions = ex.transitions, []
            for move in moves:
                for hook in self.hooks:
                    hook(conn, ex, move)
