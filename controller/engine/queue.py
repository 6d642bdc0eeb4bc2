"""The execution queue in the store: enqueue, claim under a lease, load, and write back.

Workers claim runnable executions (queued; waiting whose wake-up time has come; running whose
lease expired because a worker died) and hold a lease while they run them. On PostgreSQL the
claim uses ``FOR UPDATE SKIP LOCKED`` so any number of replicas share one queue; on SQLite the
claiming transaction is ``BEGIN IMMEDIATE``, which serialises claimers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, bindparam, insert, or_, select, update

from controller.model.statuses import ExecutionStatus, StepStatus
from controller.store.tables import execution_steps, executions, workflows

if TYPE_CHECKING:
    from controller.engine.lifecycle import Transition

__all__ = ["ExecutionRow", "StepRow", "claim", "enqueue", "load", "save"]


@dataclass
class StepRow:
    """One action's run inside an execution (mutable while the interpreter works on it)."""

    action_id: str
    type: str
    seq: int
    started_at: datetime
    status: str = StepStatus.RUNNING
    input: Any = None
    output: Any = None
    error: str | None = None
    attempts: int = 0
    finished_at: datetime | None = None
    wait_seconds: int | None = None
    wake_at: datetime | None = None  # kept in output["_wake_at"] while waiting
    idempotency_key: str | None = None  # sent with every attempt of an external effect
    attempt_log: list[dict[str, Any]] = field(default_factory=list)  # attempts that did not finish
    failure: str | None = None  # the class of its error (controller.model.statuses.Failure)
    id: int | None = None
    dirty: bool = True  # changed since it was last written: any assignment to a field sets it

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name != "dirty":
            object.__setattr__(self, "dirty", True)


@dataclass
class ExecutionRow:
    id: int
    workflow_id: int
    workflow_key: str
    version: int | None
    status: str
    trigger: dict[str, Any]
    record_ref: dict[str, Any] | None
    depth: int
    parent_id: int | None
    parent_step: str | None
    retry_of: int | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    output: Any = None
    error: str | None = None
    wake_at: datetime | None = None
    finished_at: datetime | None = None
    failure: str | None = None  # why it did not succeed, as a Failure class
    waited_seconds: float = 0.0  # time spent waiting so far (durable waits, back-offs, called workflows)
    waiting_since: datetime | None = None  # while waiting: since when
    steps: dict[str, StepRow] = field(default_factory=dict)
    # Moves made in memory since the row was last written (see controller.engine.lifecycle).
    transitions: list[Transition] = field(default_factory=list)


def enqueue(conn: Connection, rows: Sequence[dict[str, Any]], now: datetime) -> list[int]:
    """Insert queued executions; each row needs workflow_id, workflow_key and trigger.

    Only admission (:mod:`controller.engine.admission`) queues executions; this is its writer.
    """
    if not rows:
        return []
    defaults = {"status": ExecutionStatus.QUEUED, "depth": 0, "record_ref": None, "version": None, "retry_of": None,
                "parent_id": None, "parent_step": None, "created_at": now, "updated_at": now,
                "cancel_requested": False, "state": {}}
    result = conn.execute(insert(executions).returning(executions.c.id, sort_by_parameter_order=True),
                          [{**defaults, **row} for row in rows])
    return [int(i) for i in result.scalars()]


def claim(conn: Connection, owner: str, now: datetime, lease: timedelta, limit: int) -> list[int]:
    """Take up to ``limit`` runnable executions under a lease for ``owner``; oldest first."""
    e = executions.c
    held = select(workflows.c.id).where(workflows.c.sync == "Blocked")  # draining for a restore: start nothing new
    runnable = or_(
        and_(e.status == ExecutionStatus.QUEUED, e.workflow_id.not_in(held)),
        and_(e.status == ExecutionStatus.WAITING, e.wake_at.is_not(None), e.wake_at <= now),
        # released, or a dead worker's lease ran out
        and_(e.status == ExecutionStatus.RUNNING, or_(e.lease_until.is_(None), e.lease_until < now)),
    )
    free = or_(e.lease_until.is_(None), e.lease_until < now)
    query = select(e.id).where(runnable, free).order_by(e.id).limit(limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(conn.execute(query).scalars())
    if ids:
        conn.execute(update(executions).where(e.id.in_(ids)).values(lease_owner=owner, lease_until=now + lease))
    return ids


def load(conn: Connection, execution_id: int) -> ExecutionRow:
    row = conn.execute(select(executions).where(executions.c.id == execution_id)).mappings().one()
    execution = ExecutionRow(
        id=row["id"], workflow_id=row["workflow_id"], workflow_key=row["workflow_key"], version=row["version"],
        status=row["status"], trigger=dict(row["trigger"] or {}), record_ref=row["record_ref"], depth=row["depth"],
        parent_id=row["parent_id"], parent_step=row["parent_step"], retry_of=row["retry_of"],
        cancel_requested=row["cancel_requested"], created_at=row["created_at"], started_at=row["started_at"],
        output=row["output"], error=row["error"], wake_at=row["wake_at"], finished_at=row["finished_at"],
        failure=row["failure"], waited_seconds=row["waited_seconds"], waiting_since=row["waiting_since"],
    )
    s = execution_steps.c
    for step in conn.execute(select(execution_steps).where(s.execution_id == execution_id).order_by(s.seq)).mappings():
        output = step["output"]
        wake = output.pop("_wake_at", None) if isinstance(output, dict) else None
        execution.steps[step["action_id"]] = StepRow(
            id=step["id"], action_id=step["action_id"], type=step["type"], seq=step["seq"], status=step["status"],
            input=step["input"], output=output, error=step["error"], attempts=step["attempts"],
            started_at=step["started_at"], finished_at=step["finished_at"], wait_seconds=step["wait_seconds"],
            wake_at=datetime.fromisoformat(wake) if wake else None, idempotency_key=step["idempotency_key"],
            attempt_log=list(step["attempt_log"] or []), failure=step["failure"], dirty=False,
        )
    return execution


def save(conn: Connection, execution: ExecutionRow, now: datetime, *, release: bool) -> None:
    """Write the execution row and its changed steps; ``release`` gives the lease back.

    Called by :meth:`controller.engine.lifecycle.Lifecycle.save`, which runs the hooks of the moves.
    """
    values: dict[str, Any] = {
        "status": execution.status, "version": execution.version, "output": execution.output,
        "error": execution.error, "wake_at": execution.wake_at, "started_at": execution.started_at,
        "finished_at": execution.finished_at, "failure": execution.failure,
        "waited_seconds": execution.waited_seconds, "waiting_since": execution.waiting_since, "updated_at": now,
    }
    if release:
        values.update(lease_owner=None, lease_until=None)
    conn.execute(update(executions).where(executions.c.id == execution.id).values(values))
    save_steps(conn, execution.id, [s for s in execution.steps.values() if s.dirty])


def save_steps(conn: Connection, execution_id: int, steps: Iterable[StepRow]) -> None:
    pending = list(steps)
    new: list[tuple[StepRow, dict[str, Any]]] = []
    changed: list[dict[str, Any]] = []
    for step in pending:
        output = step.output
        if step.wake_at is not None:
            output = {**(output or {}), "_wake_at": step.wake_at.isoformat()}
        row = {"status": step.status, "input": step.input, "output": output, "error": step.error,
               "attempts": step.attempts, "finished_at": step.finished_at, "wait_seconds": step.wait_seconds,
               "idempotency_key": step.idempotency_key, "attempt_log": step.attempt_log, "failure": step.failure}
        if step.id is None:
            new.append((step, {**row, "execution_id": execution_id, "seq": step.seq, "action_id": step.action_id,
                               "type": step.type, "started_at": step.started_at}))
        else:
            changed.append({**row, "b_id": step.id})
        step.dirty = False
    if new:
        # Ids come back in parameter order, so later updates in the same segment find their row.
        result = conn.execute(insert(execution_steps).returning(execution_steps.c.id, sort_by_parameter_order=True),
                              [row for _, row in new])
        for (step, _), step_id in zip(new, result.scalars()):
            step.id = step_id
    if changed:
        conn.execute(update(execution_steps).where(execution_steps.c.id == bindparam("b_id")), changed)
