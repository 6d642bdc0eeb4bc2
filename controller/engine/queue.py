"""The execution queue in the store: enqueue, claim under a lease, load, and write back.

Workers claim runnable executions (queued; waiting whose wake-up time has come; running whose
lease expired because a worker died) and hold a lease while they run them. On PostgreSQL the
claim uses ``FOR UPDATE SKIP LOCKED`` so any number of replicas share one queue; on SQLite the
claiming transaction is ``BEGIN IMMEDIATE``, which serialises claimers.

The claim also keeps ``spec.concurrency``: a queued execution of a workflow with a limit starts
only into a free slot (see :func:`taken_slots` for what holds one), and one batch starts no more
than there are free slots. On PostgreSQL the claim counts a workflow's slots under the
per-workflow advisory lock that admission takes for its budgets, so replicas cannot both fill the
last slot. What admission does over the limit lives in :mod:`controller.engine.concurrency`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, text, union_all, update

from controller.model.statuses import IN_FLIGHT, ExecutionStatus, StepStatus, ordered
from controller.safeguards.ratelimit import LOCK_NAMESPACE
from controller.store.direct import executemany
from controller.store.tables import execution_steps, executions, workflow_versions, workflows

if TYPE_CHECKING:
    from controller.engine.lifecycle import Transition

__all__ = ["ExecutionRow", "StepRow", "claim", "enqueue", "load", "load_many", "lock_workflow", "release", "save", "save_all",
           "taken_slots"]


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
    stored: bool = False  # its row exists (inserted once, updated after)
    dirty: bool = True  # changed since it was last written: any assignment to a field sets it

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name not in ("dirty", "stored"):
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
    if len(rows) == 1:  # the common case (one trigger): a plain INSERT ... RETURNING, built once
        return [int(conn.execute(_ENQUEUE_ONE, {**defaults, **rows[0]}).scalar_one())]
    result = conn.execute(_ENQUEUE_MANY, [{**defaults, **row} for row in rows])
    return [int(i) for i in result.scalars()]


_ENQUEUE_ONE = insert(executions).returning(executions.c.id)
_ENQUEUE_MANY = insert(executions).returning(executions.c.id, sort_by_parameter_order=True)


_held = select(workflows.c.id).where(workflows.c.sync == "Blocked")  # draining for a restore: start nothing new
_FREE = or_(executions.c.lease_until.is_(None), executions.c.lease_until < bindparam("now"))
_STARTABLE = and_(executions.c.status == ExecutionStatus.QUEUED, executions.c.workflow_id.not_in(_held))
_RESUMABLE = or_(
    and_(executions.c.status == ExecutionStatus.WAITING, executions.c.wake_at.is_not(None),
         executions.c.wake_at <= bindparam("now")),
    # released, or a dead worker's lease ran out
    and_(executions.c.status == ExecutionStatus.RUNNING,
         or_(executions.c.lease_until.is_(None), executions.c.lease_until < bindparam("now"))),
)
_CLAIM = select(executions.c.id).where(or_(_STARTABLE, _RESUMABLE), _FREE).order_by(executions.c.id).limit(
    bindparam("limit"))
_LEASE = (update(executions).where(executions.c.id.in_(bindparam("ids", expanding=True)))
          .values(lease_owner=bindparam("owner"), lease_until=bindparam("until")))


def _oldest(*where: Any) -> Any:
    e = executions.c
    return select(e.id, e.workflow_id, e.status).where(*where).order_by(e.id).limit(bindparam("limit"))


# The runnable executions as three arms, each the oldest ``limit`` of one status, so that each reads an index
# range and stops at ``limit`` (as one OR, SQLite gathered and sorted the whole queue at every claim: a drain of
# a long queue went quadratic). A queued execution has no wake-up time (one is set only on the way to waiting),
# so ``wake_at IS NULL`` costs nothing and makes the (status, wake_at) index give the queue in id order.
_QUEUED = and_(executions.c.status == ExecutionStatus.QUEUED, executions.c.wake_at.is_(None),
               executions.c.workflow_id.not_in(_held), _FREE)
_DUE = and_(executions.c.status == ExecutionStatus.WAITING, executions.c.wake_at.is_not(None),
            executions.c.wake_at <= bindparam("now"), _FREE)
_ORPHANED = and_(executions.c.status == ExecutionStatus.RUNNING, _FREE)  # released, or a dead worker's lease ran out


def _runnable(restrict: Any = None, *, lock: bool = False) -> Any:
    """The oldest ``limit`` runnable executions (id, workflow_id, status), oldest first; ``restrict`` narrows the
    queued arm. ``lock``: each arm ``FOR UPDATE SKIP LOCKED`` (PostgreSQL)."""
    queued = _QUEUED if restrict is None else and_(_QUEUED, restrict)
    arms = [_oldest(where) for where in (queued, _DUE, _ORPHANED)]
    if lock:
        arms = [arm.with_for_update(skip_locked=True) for arm in arms]
    union = union_all(*(select(arm.subquery()) for arm in arms)).subquery()
    return select(union).order_by(union.c.id).limit(bindparam("limit"))


_RUNNABLE = _runnable()
_RUNNABLE_UNLIMITED = _runnable(executions.c.workflow_id.in_(bindparam("unlimited", expanding=True)), lock=True)


def claim(conn: Connection, owner: str, now: datetime, lease: timedelta, limit: int) -> list[int]:
    """Take up to ``limit`` runnable executions under a lease for ``owner``; oldest first.

    A queued execution of a workflow with ``spec.concurrency`` is runnable only into a free slot of
    that workflow; the others stay queued and do not stand in the way of other workflows' work.
    """
    params = {"now": now, "limit": limit}
    # The oldest runnable work, read without a lock; when none of it is queued work of a workflow with a limit
    # (the common case), it is the batch, and no slot needs counting.
    first = conn.execute(_RUNNABLE, params).all()
    queued = {row.workflow_id for row in first if row.status == ExecutionStatus.QUEUED}
    if queued and conn.execute(_LIMITED, {"ids": sorted(queued)}).first() is not None:
        ids = _claim_into_slots(conn, now, params)
    elif conn.dialect.name == "postgresql":
        # Again under row locks, the queued arm kept to the workflows just seen to have no limit (another
        # claimer may have taken some of the rows meanwhile): no advisory lock is needed, none is waited for.
        ids = list(conn.execute(_RUNNABLE_UNLIMITED, {**params, "unlimited": sorted(queued) or [0]}).scalars())
    else:  # SQLite: this transaction is the only writer; what it read stays true until it commits
        ids = [row.id for row in first]
    if ids:
        conn.execute(_LEASE, {"ids": ids, "owner": owner, "until": now + lease})
    return ids


def _claim_into_slots(conn: Connection, now: datetime, params: dict[str, Any]) -> list[int]:
    """The batch when a workflow with a concurrency limit has queued work: its queued executions only into its
    free slots, counted under its lock."""
    e = executions.c
    slots = _free_slots(conn, now)
    if not slots:
        query = _CLAIM
    else:
        # The oldest queued executions of each limited workflow, as many as it has free slots; the rest of
        # its queue is left out of the batch, so the LIMIT below goes to work that may start.
        allowed: list[int] = []
        for workflow_id, room in sorted(slots.items()):
            if room > 0:
                first = (select(e.id).where(_STARTABLE, _FREE, e.workflow_id == workflow_id)
                         .order_by(e.id).limit(min(room, params["limit"])))
                allowed += conn.execute(_locking(conn, first), params).scalars()
        queued = and_(_STARTABLE, or_(e.workflow_id.not_in(list(slots)), e.id.in_(allowed)))
        query = select(e.id).where(or_(queued, _RESUMABLE), _FREE).order_by(e.id).limit(bindparam("limit"))
    return list(conn.execute(_locking(conn, query), params).scalars())


def release(conn: Connection, owner: str, execution_ids: Sequence[int]) -> None:
    """Give back claimed executions that were not started (still as they were claimed)."""
    if execution_ids:
        conn.execute(update(executions).where(executions.c.id.in_(list(execution_ids)),
                                              executions.c.lease_owner == owner)
                     .values(lease_owner=None, lease_until=None))


def _locking(conn: Connection, query: Any) -> Any:
    """``FOR UPDATE SKIP LOCKED`` on PostgreSQL: replicas claim disjoint rows without waiting on each other."""
    return query.with_for_update(skip_locked=True) if conn.dialect.name == "postgresql" else query


# -- concurrency slots (spec.concurrency) --------------------------------------------------------------

def lock_workflow(conn: Connection, workflow_id: int, *, wait: bool = True) -> bool:
    """Take the workflow's budget lock until the transaction ends; False when ``wait`` is off and another
    transaction holds it. PostgreSQL only: on SQLite writers are serialised already, and this is True.

    It is the rate limit's advisory lock (:func:`controller.safeguards.ratelimit.retry_after`), so
    admissions and claims of one workflow take turns and two processes never both see the last slot
    free. Reentrant within a transaction.
    """
    if conn.dialect.name != "postgresql":
        return True
    params = {"ns": LOCK_NAMESPACE, "id": workflow_id}
    if wait:
        conn.execute(text("SELECT pg_advisory_xact_lock(:ns, :id)"), params)
        return True
    return bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:ns, :id)"), params).scalar())


def taken_slots(conn: Connection, workflow_ids: Collection[int], now: datetime) -> dict[int, int]:
    """How many slots of each workflow are taken: its executions running or waiting, and those queued under
    a live lease (claimed: they become running when their worker starts them)."""
    if not workflow_ids:
        return {}
    e = executions.c
    taking = or_(e.status.in_(ordered(IN_FLIGHT)),
                 and_(e.status == ExecutionStatus.QUEUED, e.lease_until.is_not(None), e.lease_until >= now))
    rows = conn.execute(select(e.workflow_id, func.count()).where(e.workflow_id.in_(list(workflow_ids)), taking)
                        .group_by(e.workflow_id))
    return {int(workflow_id): int(n) for workflow_id, n in rows}


# The limit of each workflow's current version, read in SQL (JSONB on PostgreSQL, JSON1 on SQLite), for the
# workflows with queued work that could start.
_limit = workflow_versions.c.content[("spec", "concurrency", "limit")].as_integer()
_LIMITS = (select(workflows.c.id, _limit)
           .join(workflow_versions, and_(workflow_versions.c.workflow_id == workflows.c.id,
                                         workflow_versions.c.version == workflows.c.version))
           .where(workflows.c.id.in_(select(executions.c.workflow_id).where(_STARTABLE, _FREE).distinct()),
                  _limit.is_not(None))
           .order_by(workflows.c.id))
_LIMITED = (select(workflows.c.id)
            .join(workflow_versions, and_(workflow_versions.c.workflow_id == workflows.c.id,
                                          workflow_versions.c.version == workflows.c.version))
            .where(workflows.c.id.in_(bindparam("ids", expanding=True)), _limit.is_not(None)))


def _free_slots(conn: Connection, now: datetime) -> dict[int, int]:
    """Free slots of each workflow with a concurrency limit that has queued work that could start, counted
    under its lock (0 when another transaction holds that one, see below); workflows without a limit are not
    in the answer."""
    limits = {int(workflow_id): int(n) for workflow_id, n in conn.execute(_LIMITS, {"now": now})}
    # An admission may hold the locks of several workflows, taken in its own order: waiting for a second lock
    # while holding one could close a deadlock. So the claim waits only for its first (it holds no lock of
    # any kind yet) and merely tries the others: a workflow busy elsewhere starts nothing new in this batch
    # (as SKIP LOCKED passes over busy rows), and the next claim looks again.
    locked: dict[int, int] = {}
    for workflow_id, n in limits.items():
        if lock_workflow(conn, workflow_id, wait=not locked):
            locked[workflow_id] = n
    taken = taken_slots(conn, locked, now)  # counted under the locks: what the previous holder claimed is visible
    return {workflow_id: max(0, n - taken.get(workflow_id, 0)) if workflow_id in locked else 0
            for workflow_id, n in limits.items()}


# Built once: a statement object keeps its compiled form's cache key, so executing it again costs
# neither the construction nor the key (both were most of the engine's time per execution).
_e, _s = executions.c, execution_steps.c
# ExecutionRow's stored fields, in its order: a row of _EXECUTIONS is its positional arguments.
_LOADED = tuple(f.name for f in fields(ExecutionRow) if f.name not in ("steps", "transitions"))
_EXECUTIONS = select(*(executions.c[name] for name in _LOADED)).where(_e.id.in_(bindparam("ids", expanding=True)))
_STEPS = (select(execution_steps).where(_s.execution_id.in_(bindparam("ids", expanding=True)))
          .order_by(_s.execution_id, _s.seq))
_INSERT_STEP = insert(execution_steps)
_UPDATE_STEP = update(execution_steps).where(_s.execution_id == bindparam("b_execution"),
                                             _s.action_id == bindparam("b_action"))
_UPDATE_EXECUTION = update(executions).where(_e.id == bindparam("b_id"))


def load(conn: Connection, execution_id: int) -> ExecutionRow:
    return load_many(conn, [execution_id])[0]


def load_many(conn: Connection, execution_ids: Sequence[int]) -> list[ExecutionRow]:
    """The executions with their steps, in the order of ``execution_ids`` (two queries for any number; one when
    they are all queued: an execution has steps only once it has run)."""
    loaded: dict[int, ExecutionRow] = {}
    for row in conn.execute(_EXECUTIONS, {"ids": list(execution_ids)}):
        ex = ExecutionRow(*row)
        ex.trigger = dict(ex.trigger or {})
        loaded[ex.id] = ex
    ran = [ex.id for ex in loaded.values() if ex.status != ExecutionStatus.QUEUED]
    for step in conn.execute(_STEPS, {"ids": ran}).mappings() if ran else ():
        output = step["output"]
        wake = output.pop("_wake_at", None) if isinstance(output, dict) else None
        loaded[step["execution_id"]].steps[step["action_id"]] = StepRow(
            action_id=step["action_id"], type=step["type"], seq=step["seq"], status=step["status"],
            input=step["input"], output=output, error=step["error"], attempts=step["attempts"],
            started_at=step["started_at"], finished_at=step["finished_at"], wait_seconds=step["wait_seconds"],
            wake_at=datetime.fromisoformat(wake) if wake else None, idempotency_key=step["idempotency_key"],
            attempt_log=list(step["attempt_log"] or []), failure=step["failure"], stored=True, dirty=False,
        )
    return [loaded[i] for i in execution_ids]


def save(conn: Connection, execution: ExecutionRow, now: datetime, *, release: bool) -> None:
    """Write the execution row and its changed steps; ``release`` gives the lease back."""
    save_all(conn, [execution], now, release=release)


def save_all(conn: Connection, batch: Sequence[ExecutionRow], now: datetime, *, release: bool) -> None:
    """Write the execution rows and their changed steps: three statements however many (executemany).

    Called by :meth:`controller.engine.lifecycle.Lifecycle.save`, which runs the hooks of the moves.
    """
    rows = []
    for execution in batch:
        values: dict[str, Any] = {
            "b_id": execution.id, "status": execution.status, "version": execution.version,
            "output": execution.output, "error": execution.error, "wake_at": execution.wake_at,
            "started_at": execution.started_at, "finished_at": execution.finished_at, "failure": execution.failure,
            "waited_seconds": execution.waited_seconds, "waiting_since": execution.waiting_since, "updated_at": now,
        }
        if release:
            values.update(lease_owner=None, lease_until=None)
        rows.append(values)
    executemany(conn, _UPDATE_EXECUTION, rows)
    save_steps(conn, [(execution.id, step) for execution in batch for step in execution.steps.values() if step.dirty])


def save_steps(conn: Connection, steps: Iterable[tuple[int, StepRow]]) -> None:
    """Write ``(execution id, step)`` pairs: new steps inserted, known ones updated."""
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for execution_id, step in steps:
        output = step.output
        if step.wake_at is not None:
            output = {**(output or {}), "_wake_at": step.wake_at.isoformat()}
        row = {"status": step.status, "input": step.input, "output": output, "error": step.error,
               "attempts": step.attempts, "finished_at": step.finished_at, "wait_seconds": step.wait_seconds,
               "idempotency_key": step.idempotency_key, "attempt_log": step.attempt_log, "failure": step.failure}
        if not step.stored:
            new.append({**row, "execution_id": execution_id, "seq": step.seq, "action_id": step.action_id,
                        "type": step.type, "started_at": step.started_at})
            step.stored = True
        else:
            changed.append({**row, "b_execution": execution_id, "b_action": step.action_id})
        step.dirty = False
    # One executemany each: a step is found again by (execution, action id), unique per execution.
    executemany(conn, _INSERT_STEP, new)
    executemany(conn, _UPDATE_STEP, changed)
