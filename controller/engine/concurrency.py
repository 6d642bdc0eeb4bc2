"""Concurrency limits (``spec.concurrency``): at most ``limit`` executions of a workflow at once.

The budget is in the store, so it holds across processes and replicas. Two places keep it:

- the claim (:func:`controller.engine.queue.claim`) starts a queued execution of a limited
  workflow only into a free slot, whatever the behavior, so at most ``limit`` are running or
  waiting; with ``behavior: queue`` (the default) that is all: the others wait in the queue;
- admission (:mod:`controller.engine.admission`), after the rate limit and under the workflow's
  budget lock (:func:`controller.engine.queue.lock_workflow`), asks this module: for ``drop``, a
  trigger is dropped and counted (as over a rate limit) while the workflow has ``limit``
  executions queued, running or waiting; for ``cancel-oldest``, the new execution is admitted and
  the oldest ones are terminated by :func:`terminate_oldest` until no more than ``limit`` are left.

Queued executions count at admission although they hold no slot yet: each of them takes one as
soon as a worker can start it, so admitting one more would make it wait, which is what ``drop``
and ``cancel-oldest`` are there to avoid.

:func:`terminate_oldest` needs the engine's lifecycle (every status change goes through it, with
its hooks), which admission does not have: the engine injects it as ``Admission.cancel_oldest``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import Connection, func, select, update

from controller.engine import queue
from controller.engine.lifecycle import Lifecycle, transition
from controller.model.statuses import ACTIVE, ExecutionStatus, Failure, ordered
from controller.store.tables import executions

Behavior = Literal["queue", "drop", "cancel-oldest"]
RETRY_AFTER = 1
"""Seconds a dropped caller is told to wait: a slot frees when an execution ends, which nothing can foresee."""

e = executions.c


@dataclass(frozen=True)
class Concurrency:
    limit: int
    behavior: Behavior


def of(definition: Mapping[str, Any] | None) -> Concurrency | None:
    """The ``spec.concurrency`` of a normalized definition, or None when the workflow has none.

    (The claim reads the same key, ``spec.concurrency.limit``, in SQL from the current version.)
    """
    spec = ((definition or {}).get("spec") or {}).get("concurrency")
    if not spec:
        return None
    return Concurrency(int(spec["limit"]), cast(Behavior, spec.get("behavior", "queue")))


def active(conn: Connection, workflow_id: int, *, cancelling: bool = True) -> int:
    """The workflow's executions queued, running or waiting; without those already asked to cancel
    (a running one finishes its step first) unless ``cancelling``."""
    query = select(func.count()).where(e.workflow_id == workflow_id, e.status.in_(ordered(ACTIVE)))
    if not cancelling:
        query = query.where(e.cancel_requested.is_(False))
    return int(conn.execute(query).scalar_one())


def terminate_oldest(lifecycle: Lifecycle, conn: Connection, workflow_id: int, now: datetime,
                     reason: str) -> int | None:
    """Terminate the workflow's oldest execution queued, running or waiting (and not being cancelled
    already) with ``reason``; its id, or None when there is none.

    One that a worker holds under a live lease is asked to cancel (``cancel_requested``), as
    :meth:`controller.engine.runtime.Engine.cancel` does: that worker terminates it at its next step,
    and its slot stays taken until then. Any other is terminated now, with its calls in flight.
    """
    oldest = conn.execute(
        select(e.id).where(e.workflow_id == workflow_id, e.status.in_(ordered(ACTIVE)),
                           e.cancel_requested.is_(False))
        .order_by(e.id).limit(1)
    ).scalar()
    if oldest is None:
        return None
    _stop(lifecycle, conn, int(oldest), now, reason)
    return int(oldest)


def _stop(lifecycle: Lifecycle, conn: Connection, execution_id: int, now: datetime, reason: str) -> None:
    lease_until = conn.execute(select(e.lease_until).where(e.id == execution_id)).scalar()
    if lease_until is not None and lease_until >= now:
        # Its worker would write over a termination made here; it reads the flag before and after each segment.
        conn.execute(update(executions).where(e.id == execution_id).values(cancel_requested=True))
        return
    ex = queue.load(conn, execution_id)
    transition(ex, ExecutionStatus.TERMINATED, now, error=reason, failure=Failure.GUARD)
    lifecycle.save(conn, ex, now, release=True)
    children = conn.execute(select(e.id).where(e.parent_id == execution_id, e.status.in_(ordered(ACTIVE)),
                                               e.cancel_requested.is_(False)).order_by(e.id))
    for child in list(children.scalars()):
        _stop(lifecycle, conn, int(child), now, f"its caller, execution {execution_id}, was terminated: {reason}")
