"""The engine's front door: start executions, run what is runnable, retry and cancel.

An :class:`Engine` owns no thread; ``wfctl serve`` runs ``run_pending`` from worker threads, tests
call ``run_until_idle`` with a manual clock. Each execution is pinned, when it first starts
running, to the workflow's version current at that moment, and keeps it to the end.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, update

from controller.engine import queue
from controller.engine.clock import Clock, SystemClock
from controller.engine.directory import Directory
from controller.engine.effects import Effects
from controller.engine.interpreter import Interpreter, default_modules
from controller.engine.live import cookieless_session
from controller.engine.queue import ExecutionRow
from controller.engine.templating import Templates
from controller.errors import GuardError, NotFoundError, UsageError
from controller.store import Store
from controller.store import records as record_store
from controller.store.directory import StoreDirectory
from controller.store.tables import execution_steps, executions, workflow_versions, workflows

log = logging.getLogger(__name__)

EffectsFactory = Callable[["Engine", ExecutionRow], Effects]


class Engine:
    def __init__(self, store: Store, *, data_dir: Path, clock: Clock | None = None,
                 directory: Directory | None = None, effects: EffectsFactory | None = None,
                 lease_seconds: float = 60.0, max_depth: int = 10, owner: str | None = None):
        self.store = store
        self.data_dir = data_dir
        self.clock = clock or SystemClock()
        self.directory = directory or StoreDirectory(store)
        self.templates = Templates()
        self.interpreter = Interpreter(self.templates, self.directory, default_modules(), self.clock.now)
        self._effects = effects or live_effects
        self.lease = timedelta(seconds=lease_seconds)
        self.max_depth = max_depth
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._definitions: dict[tuple[int, int], dict[str, Any]] = {}
        self.http = cookieless_session()  # one connection pool for every step's HTTP calls

    # -- starting ---------------------------------------------------------------------------

    def start(self, key: str, trigger: dict[str, Any], record_ref: dict[str, Any] | None = None, *,
              depth: int = 0, conn: Connection | None = None) -> int:
        """Queue an execution of ``key`` now (in ``conn``'s transaction when given)."""
        if conn is None:
            with self.store.tx() as own:
                return self.start(key, trigger, record_ref, depth=depth, conn=own)
        row = conn.execute(select(workflows).where(workflows.c.key == key)).mappings().first()
        if row is None or row["deleted"]:
            raise NotFoundError(f"no workflow {key!r}; see `wfctl status`", workflow=key)
        if row["content_hash"] is None:
            raise GuardError(f"{key} has no valid version to run ({row['message']})", workflow=key)
        if not row["enabled"]:
            raise GuardError(f"{key} is disabled (spec.enabled: false); enable it in git to run it", workflow=key)
        return queue.enqueue(conn, [{"workflow_id": row["id"], "workflow_key": key, "trigger": trigger,
                                     "record_ref": record_ref, "depth": depth}], self.clock.now())[0]

    # -- running ------------------------------------------------------------------------------

    def run_pending(self, limit: int = 10, stop: Callable[[], bool] = lambda: False) -> int:
        """Claim up to ``limit`` runnable executions and advance each; returns how many ran."""
        with self.store.tx() as conn:
            ids = queue.claim(conn, self.owner, self.clock.now(), self.lease, limit)
        for execution_id in ids:
            self.run_one(execution_id, stop)
        return len(ids)

    def run_until_idle(self, max_rounds: int = 10_000) -> int:
        """Run until nothing is runnable at the clock's current time (tests, `wfctl run --wait`)."""
        total = 0
        for _ in range(max_rounds):
            ran = self.run_pending()
            if not ran:
                return total
            total += ran
        raise RuntimeError(f"still runnable after {max_rounds} rounds; is an execution looping?")

    def run_one(self, execution_id: int, stop: Callable[[], bool] = lambda: False) -> None:
        with self.store.read() as conn:
            ex = queue.load(conn, execution_id)
            definition = self._prepare(conn, ex)
            scope = self._scope(conn, ex) if definition is not None else {}
        segment = None
        if definition is not None:
            segment = self.interpreter.run(ex, definition, scope, self._effects(self, ex), self._checkpoint, stop)
        with self.store.tx() as conn:
            if ex.status not in queue.FINAL and self._cancel_requested(conn, ex.id):
                self._terminate(ex, "cancelled")
            for action_id, workflow, payload in segment.calls if segment else []:
                self._start_child(conn, ex, action_id, workflow, payload)
            queue.save(conn, ex, self.clock.now(), release=True)
            if ex.status in queue.FINAL and ex.parent_id is not None:
                self._wake_parent(conn, ex)
        log.info("execution %s of %s v%s: %s%s", ex.id, ex.workflow_key, ex.version, ex.status,
                 f" ({ex.error})" if ex.error else "")

    def _prepare(self, conn: Connection, ex: ExecutionRow) -> dict[str, Any] | None:
        """Pin a queued execution to the current version; None when it must not run."""
        if ex.status in queue.FINAL:
            return None
        if ex.cancel_requested:
            self._terminate(ex, "cancelled")
            return None
        if ex.version is None:
            row = conn.execute(select(workflows).where(workflows.c.id == ex.workflow_id)).mappings().one()
            if row["deleted"] or row["content_hash"] is None or not row["enabled"]:
                state = "deleted" if row["deleted"] else "disabled" if not row["enabled"] else "not valid"
                self._terminate(ex, f"{ex.workflow_key} is {state}; queued executions do not start")
                return None
            ex.version = row["version"]
        if ex.started_at is None:
            ex.started_at = self.clock.now()
        ex.status = "running"
        return self._definition(conn, ex.workflow_id, ex.version)

    def _definition(self, conn: Connection, workflow_id: int, version: int) -> dict[str, Any]:
        key = (workflow_id, version)
        if key not in self._definitions:
            v = workflow_versions.c
            self._definitions[key] = conn.execute(
                select(v.content).where(v.workflow_id == workflow_id, v.version == version)
            ).scalar_one()
        return self._definitions[key]

    def _scope(self, conn: Connection, ex: ExecutionRow) -> dict[str, Any]:
        account, name = ex.workflow_key.split("/", 1)
        record = ex.trigger.get("record")
        if ex.record_ref:  # the record as it is now: a step after a wait sees fresh data
            try:
                record = record_store.get(conn, account, ex.record_ref["type"], str(ex.record_ref["id"]))
            except NotFoundError:
                pass
        steps = {s.action_id: {"output": s.output} for s in ex.steps.values() if s.status == "succeeded"}
        return {"record": record, "trigger": ex.trigger, "steps": steps, "vars": {}, "account": account,
                "workflow": {"id": ex.workflow_key, "name": name, "account": account, "version": ex.version},
                "execution": {"id": ex.id}}

    def _checkpoint(self, ex: ExecutionRow) -> None:
        with self.store.tx() as conn:
            queue.save(conn, ex, self.clock.now(), release=False)

    def _start_child(self, conn: Connection, ex: ExecutionRow, action_id: str, workflow: str,
                     payload: dict[str, Any]) -> None:
        account = ex.workflow_key.split("/", 1)[0]
        step = ex.steps[action_id]
        if ex.depth + 1 > self.max_depth:
            step.status, step.error, step.dirty = "failed", f"calls nest deeper than {self.max_depth}", True
        else:
            trigger = {"type": "call", "input": payload, "parent": {"execution": ex.id, "workflow": ex.workflow_key}}
            try:
                child = self.start(f"{account}/{workflow}", trigger, ex.record_ref, depth=ex.depth + 1, conn=conn)
            except (NotFoundError, GuardError) as e:
                step.status, step.error, step.dirty = "failed", f"step {action_id}: {e}", True
            else:
                conn.execute(update(executions).where(executions.c.id == child)
                             .values(parent_id=ex.id, parent_step=action_id))
                step.output = {"workflow": workflow, "execution_id": child}
                return
        step.finished_at = self.clock.now()
        ex.status, ex.error, ex.finished_at, ex.wake_at = "failed", step.error, step.finished_at, None

    def _wake_parent(self, conn: Connection, child: ExecutionRow) -> None:
        """A finished child completes its parent's ``workflow.call`` step and makes the parent runnable."""
        now = self.clock.now()
        ok = child.status == "succeeded"
        s = execution_steps.c
        conn.execute(
            update(execution_steps)
            .where(s.execution_id == child.parent_id, s.action_id == child.parent_step)
            .values(status="succeeded" if ok else "failed", finished_at=now,
                    output=child.output if ok else {"execution_id": child.id},
                    error=None if ok else f"step {child.parent_step}: called execution {child.id} "
                                          f"({child.workflow_key}) {child.status}: {child.error}")
        )
        conn.execute(update(executions).where(executions.c.id == child.parent_id, executions.c.status == "waiting")
                     .values(wake_at=now))

    def _terminate(self, ex: ExecutionRow, reason: str) -> None:
        ex.status, ex.error, ex.finished_at, ex.wake_at = "terminated", reason, self.clock.now(), None

    @staticmethod
    def _cancel_requested(conn: Connection, execution_id: int) -> bool:
        return bool(conn.execute(select(executions.c.cancel_requested).where(executions.c.id == execution_id))
                    .scalar())

    # -- operator actions ---------------------------------------------------------------------

    def retry(self, execution_id: int, *, latest: bool = False,
              admit: Callable[[Connection, Any], None] | None = None) -> int:
        """A new execution with the original's trigger, linked by ``retry_of``.

        ``admit(conn, original_row)`` runs in the same transaction just before the new execution is
        queued and may refuse it by raising (the HTTP API's rate limit).
        """
        with self.store.tx() as conn:
            original = _row(conn, execution_id)
            if original["status"] not in ("failed", "terminated"):
                raise UsageError(f"execution {execution_id} is {original['status']}; only failed or terminated "
                                 f"executions can be retried")
            if admit is not None:
                admit(conn, original)
            new_id = self.start(original["workflow_key"], dict(original["trigger"]), original["record_ref"], conn=conn)
            version = None if latest else original["version"]
            conn.execute(update(executions).where(executions.c.id == new_id)
                         .values(retry_of=execution_id, version=version))
        return new_id

    def cancel(self, execution_id: int) -> str:
        """Terminate a queued or waiting execution now, a running one at its next step."""
        now = self.clock.now()
        with self.store.tx() as conn:
            row = _row(conn, execution_id)
            if row["status"] in queue.FINAL:
                raise UsageError(f"execution {execution_id} already {row['status']}")
            if row["status"] == "running" and row["lease_until"] is not None:
                conn.execute(update(executions).where(executions.c.id == execution_id).values(cancel_requested=True))
                return "cancelling"
            ex = queue.load(conn, execution_id)
            self._terminate(ex, "cancelled by an operator")
            queue.save(conn, ex, now, release=True)
            if ex.parent_id is not None:
                self._wake_parent(conn, ex)
            children = conn.execute(select(executions.c.id).where(executions.c.parent_id == execution_id,
                                                                   executions.c.status.notin_(queue.FINAL)))
            child_ids = list(children.scalars())
        for child in child_ids:
            self.cancel(child)
        return "terminated"


def _row(conn: Connection, execution_id: int) -> Any:
    row = conn.execute(select(executions).where(executions.c.id == execution_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no execution {execution_id}; see `wfctl executions list`")
    return row


def live_effects(engine: Engine, ex: ExecutionRow) -> Effects:
    """Real effects; records written by a step fire record triggers one level deeper."""
    from controller.engine.live import LiveEffects
    from controller.engine.records import RecordService, StepRecords

    return LiveEffects(data_dir=engine.data_dir, records=StepRecords(RecordService(engine, depth=ex.depth + 1)),
                       session=engine.http)
