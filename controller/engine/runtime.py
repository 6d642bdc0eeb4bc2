"""The engine's front door: start executions, run what is runnable, retry and cancel.

An :class:`Engine` owns no thread; ``wfctl serve`` runs ``run_pending`` from worker threads, tests
call ``run_until_idle`` with a manual clock. Each execution is pinned, when it first starts
running, to the workflow's version current at that moment, and keeps it to the end.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from controller.config import Config
from controller.engine import concurrency, queue, unit
from controller.engine import scope as scopes
from controller.engine.admission import Admission, Request, Verdict
from controller.engine.clock import Clock, SystemClock
from controller.engine.directory import Directory
from controller.engine.effects import Effects, HttpCall
from controller.engine.interpreter import Interpreter, Segment, default_modules
from controller.engine.lifecycle import Lifecycle, Transition, transition
from controller.engine.queue import ExecutionRow
from controller.engine.templating import Templates
from controller.engine.triggers import call
from controller.engine.versions import Versions
from controller.errors import NotFoundError, UsageError
from controller.metrics import rollup
from controller.model.entries import DirectoryEntry
from controller.model.statuses import FINAL, ExecutionStatus, Failure, StepStatus
from controller.outbound import Clients
from controller.safeguards import alerts, suspension
from controller.store import Store
from controller.store import records as record_store
from controller.store.directory import StoreDirectory
from controller.store.tables import execution_steps, executions, workflows

log = logging.getLogger(__name__)

EffectsFactory = Callable[["Engine", ExecutionRow], Effects]

_w = workflows.c
_WORKFLOW_STATES = (select(_w.id, _w.deleted, _w.content_hash, _w.enabled, _w.version)
                    .where(_w.id.in_(bindparam("ids", expanding=True))))
_CANCEL_REQUESTED = select(executions.c.id).where(executions.c.id.in_(bindparam("ids", expanding=True)),
                                                  executions.c.cancel_requested.is_(True))


class Engine:
    """Admits, runs, retries and cancels executions over one store.

    ``admission`` is the one way in (every execution of every trigger kind is created there);
    ``lifecycle`` the one way out (every status change is written there, with its after-hooks).
    """

    def __init__(self, store: Store, *, data_dir: Path, clock: Clock | None = None,
                 directory: Directory | None = None, effects: EffectsFactory | None = None,
                 lease_seconds: float = 60.0, max_depth: int = 10, owner: str | None = None,
                 config: Config | None = None, templates: Templates | None = None):
        self.store = store
        self.data_dir = data_dir
        self.clock = clock or SystemClock()
        self.directory = directory or StoreDirectory(store)
        config = config or Config()
        self.config = config
        self.templates = templates or Templates()
        self.interpreter = Interpreter(self.templates, self.directory, default_modules(), self.clock.now,
                                       idempotency_header=config.idempotency_header)
        self._effects = effects or live_effects
        self.lease = timedelta(seconds=lease_seconds)
        self.max_depth = max_depth
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.versions = Versions()
        self.admission = Admission(templates=self.templates, versions=self.versions, now=self.clock.now,
                                   default_limit=config.rate_limit)
        self.rollup = rollup.Rollup()  # the metrics of finished executions (and the counters observing them)
        self.lifecycle = Lifecycle([wake_parent, self.rollup, alerts.FailureAlerts(config, self.clock.now)])
        self.admission.cancel_oldest = lambda conn, workflow_id, reason: concurrency.terminate_oldest(
            self.lifecycle, conn, workflow_id, self.clock.now(), reason)
        # The safeguards: a suspended workflow starts nothing; drops accumulate into one alert.
        self.admission.guards.append(suspension.guard)
        self.admission.observers.append(alerts.DropAlerts(config, self.clock.now))
        self.http = Clients()  # one connection pool per outbound policy, for every step's HTTP calls

    # -- starting ---------------------------------------------------------------------------

    def admit(self, request: Request, conn: Connection | None = None) -> Verdict:
        """Admission of ``request`` (in ``conn``'s transaction when given, else in its own)."""
        if conn is not None:
            return self.admission.admit(conn, request)
        with self.store.tx() as own:
            return self.admission.admit(own, request)

    def start(self, key: str, trigger: dict[str, Any], record_ref: dict[str, Any] | None = None) -> int:
        """Admit one execution of ``key`` in a transaction of its own; the id, or the verdict's error.

        The decision (a drop counted, a refusal noted) is committed before the error is raised.
        """
        kind = "webhook" if trigger.get("type") == "webhook" else "manual"
        return self.admit(Request(key, kind, trigger, record_ref)).execution()

    # -- running ------------------------------------------------------------------------------

    def run_pending(self, limit: int = 10, stop: Callable[[], bool] = lambda: False,
                    budget: float | None = None) -> int:
        """Claim up to ``limit`` runnable executions and advance each; returns how many ran.

        One transaction claims the batch; it is read outside the write lock (the lease holds it). An
        execution whose version has pure steps only (``set``, ``if``, ``wait``) has nothing to repeat if
        it is lost, so its result waits to be written with the others of the batch, in one transaction;
        before any execution with an effect runs, what is pending is written first. Past ``budget``
        seconds (slow effects), the executions not started yet are given back for other workers.
        """
        with self.store.tx() as conn:
            ids = queue.claim(conn, self.owner, self.clock.now(), self.lease, limit)
        if not ids:
            return 0
        began = time.perf_counter()
        with self.store.read() as conn:  # under the lease: no write lock needed to read them
            batch = self._prepare(conn, queue.load_many(conn, ids))
        pending: list[tuple[ExecutionRow, Segment | None]] = []
        for n, (ex, definition, scope) in enumerate(batch):
            if n and budget is not None and time.perf_counter() - began > budget:
                self._finish(pending)
                with self.store.tx() as conn:
                    queue.release(conn, self.owner, [rest.id for rest, _, _ in batch[n:]])
                return n
            if definition is not None and not self.versions.pure(ex.workflow_id, ex.version or 0, definition):
                self._finish(pending)
            pending.append((ex, self._advance(ex, definition, scope, stop)))
        self._finish(pending)
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
        """Advance one execution (it must be claimed by this engine's owner)."""
        with self.store.read() as conn:
            [(ex, definition, scope)] = self._prepare(conn, [queue.load(conn, execution_id)])
        self._finish([(ex, self._advance(ex, definition, scope, stop))])

    def _advance(self, ex: ExecutionRow, definition: Mapping[str, Any] | None, scope: dict[str, Any],
                 stop: Callable[[], bool]) -> Segment | None:
        if definition is None:
            return None
        effects = Deferred(lambda: self._effects(self, ex))
        return self.interpreter.run(ex, definition, scope, effects, self._checkpoint, stop, unit=self._unit)

    def _finish(self, pending: list[tuple[ExecutionRow, Segment | None]]) -> None:
        """Write the advanced executions (one transaction), start the workflows they call, release them."""
        if not pending:
            return
        with self.store.tx() as conn:
            open_ = [ex.id for ex, _ in pending if ex.status not in FINAL]
            cancelling = set(conn.execute(_CANCEL_REQUESTED, {"ids": open_}).scalars()) if open_ else set()
            for ex, segment in pending:
                if ex.id in cancelling:
                    self._terminate(ex, "cancelled")
                for action_id, workflow, payload in segment.calls if segment else []:
                    self._start_child(conn, ex, action_id, workflow, payload)
            self.lifecycle.save_all(conn, [ex for ex, _ in pending], self.clock.now(), release=True)
        for ex, _ in pending:
            log.info("execution %s of %s v%s: %s%s", ex.id, ex.workflow_key, ex.version, ex.status,
                     f" ({ex.error})" if ex.error else "")
        pending.clear()

    def _prepare(self, conn: Connection, batch: list[ExecutionRow]
                 ) -> list[tuple[ExecutionRow, Mapping[str, Any] | None, dict[str, Any]]]:
        """Pin each queued execution to its workflow's current version and start it: each with its definition
        and scope, or (None, {}) when it must not run."""
        unpinned = list({ex.workflow_id for ex in batch if ex.version is None})
        states = {row.id: row for row in conn.execute(_WORKFLOW_STATES, {"ids": unpinned})} if unpinned else {}
        prepared: list[tuple[ExecutionRow, Mapping[str, Any] | None, dict[str, Any]]] = []
        for ex in batch:
            version = self._start(ex, states.get(ex.workflow_id))
            if version is None:
                prepared.append((ex, None, {}))
            else:
                prepared.append((ex, self.versions.content(conn, ex.workflow_id, version), self._scope(conn, ex)))
        return prepared

    def _start(self, ex: ExecutionRow, state: Any) -> int | None:
        """Move ``ex`` to running (pinned to ``state``'s version when it has none yet) and return its version;
        None, with the execution terminated when it must not run, or left alone when it has ended already."""
        if ex.status in FINAL:
            return None
        if ex.cancel_requested:
            self._terminate(ex, "cancelled")
            return None
        if ex.version is None:
            if state.deleted or state.content_hash is None or not state.enabled:
                why = "deleted" if state.deleted else "disabled" if not state.enabled else "not valid"
                self._terminate(ex, f"{ex.workflow_key} is {why}; queued executions do not start", Failure.GUARD)
                return None
            ex.version = state.version
        transition(ex, ExecutionStatus.RUNNING, self.clock.now())
        return ex.version

    def _scope(self, conn: Connection, ex: ExecutionRow) -> dict[str, Any]:
        account = ex.workflow_key.split("/", 1)[0]
        record = ex.trigger.get("record")
        if ex.record_ref:  # the record as it is now: a step after a wait sees fresh data
            try:
                record = record_store.get(conn, account, ex.record_ref["type"], str(ex.record_ref["id"]))
            except NotFoundError:
                pass
        steps = {s.action_id: {"output": s.output} for s in ex.steps.values() if s.status == StepStatus.SUCCEEDED}
        return scopes.build(workflow=ex.workflow_key, version=ex.version, trigger=ex.trigger, record=record,
                            now=self.clock.now(), execution={"id": ex.id}, steps=steps)

    def _checkpoint(self, ex: ExecutionRow) -> None:
        """Write the execution's progress: in the step's unit of work when inside one, else on its own."""
        joined = unit.bound()
        if joined is not None:
            self.lifecycle.save(joined, ex, self.clock.now(), release=False)
            return
        with self.store.tx() as conn:
            self.lifecycle.save(conn, ex, self.clock.now(), release=False)

    @contextmanager
    def _unit(self) -> Iterator[None]:
        """One transaction for an internal effect and the checkpoint of its step (see engine.unit)."""
        with self.store.tx() as conn, unit.bind(conn):
            yield

    def _start_child(self, conn: Connection, ex: ExecutionRow, action_id: str, workflow: str,
                     payload: dict[str, Any]) -> None:
        """Admit the child of a ``workflow.call`` step; a child that is not started fails the step."""
        account = ex.workflow_key.split("/", 1)[0]
        step = ex.steps[action_id]
        if ex.depth + 1 > self.max_depth:
            error = f"step {action_id}: calls nest deeper than {self.max_depth}"
        else:
            trigger = call.payload(payload, {"execution": ex.id, "workflow": ex.workflow_key})
            verdict = self.admission.admit(conn, Request(f"{account}/{workflow}", "call", trigger, ex.record_ref,
                                                         depth=ex.depth + 1, parent=(ex.id, action_id)))
            if verdict.started:
                step.output = {"workflow": workflow, "execution_id": verdict.execution_id}
                return
            error = f"step {action_id}: the call of {account}/{workflow} was {verdict.decision}: {verdict.reason}"
        now = self.clock.now()
        step.status, step.error, step.finished_at, step.failure = StepStatus.FAILED, error, now, Failure.GUARD
        transition(ex, ExecutionStatus.FAILED, now, error=error, failure=Failure.GUARD)

    def _terminate(self, ex: ExecutionRow, reason: str, failure: str = Failure.CANCELLED) -> None:
        transition(ex, ExecutionStatus.TERMINATED, self.clock.now(), error=reason, failure=failure)

    # -- operator actions ---------------------------------------------------------------------

    def retry(self, execution_id: int, *, latest: bool = False) -> int:
        """Admit a new execution with the original's trigger, linked by ``retry_of``; its id.

        It runs on the original's version unless ``latest``, and draws on the workflow's rate limit:
        over it, RateLimited is raised once the drop is committed (so it stays counted).
        """
        with self.store.tx() as conn:
            original = _row(conn, execution_id)
            if original["status"] not in (ExecutionStatus.FAILED, ExecutionStatus.TERMINATED):
                raise UsageError(f"execution {execution_id} is {original['status']}; only failed or terminated "
                                 f"executions can be retried")
            verdict = self.admission.admit(conn, Request(
                original["workflow_key"], "retry", dict(original["trigger"]), original["record_ref"],
                version=None if latest else original["version"], retry_of=execution_id))
        return verdict.execution()

    def cancel(self, execution_id: int) -> str:
        """Terminate a queued or waiting execution now, a running one at its next step."""
        now = self.clock.now()
        with self.store.tx() as conn:
            row = _row(conn, execution_id)
            if row["status"] in FINAL:
                raise UsageError(f"execution {execution_id} already {row['status']}")
            if row["status"] == ExecutionStatus.RUNNING and row["lease_until"] is not None:
                conn.execute(update(executions).where(executions.c.id == execution_id).values(cancel_requested=True))
                return "cancelling"
            ex = queue.load(conn, execution_id)
            self._terminate(ex, "cancelled by an operator")
            self.lifecycle.save(conn, ex, now, release=True)
            children = conn.execute(select(executions.c.id).where(executions.c.parent_id == execution_id,
                                                                   executions.c.status.notin_(tuple(FINAL))))
            child_ids = list(children.scalars())
        for child in child_ids:
            self.cancel(child)
        return "terminated"


def wake_parent(conn: Connection, child: ExecutionRow, move: Transition) -> None:
    """Lifecycle hook: a finished child completes its parent's ``workflow.call`` step and wakes the parent."""
    if not move.final or child.parent_id is None:
        return
    ok = child.status == ExecutionStatus.SUCCEEDED
    s = execution_steps.c
    conn.execute(
        update(execution_steps)
        .where(s.execution_id == child.parent_id, s.action_id == child.parent_step)
        .values(status=StepStatus.SUCCEEDED if ok else StepStatus.FAILED, finished_at=move.at,
                failure=None if ok else Failure.CALL,
                output=child.output if ok else {"execution_id": child.id},
                error=None if ok else f"step {child.parent_step}: called execution {child.id} "
                                      f"({child.workflow_key}) {child.status}: {child.error}")
    )
    conn.execute(update(executions).where(executions.c.id == child.parent_id,
                                          executions.c.status == ExecutionStatus.WAITING).values(wake_at=move.at))


def _row(conn: Connection, execution_id: int) -> Any:
    row = conn.execute(select(executions).where(executions.c.id == execution_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no execution {execution_id}; see `wfctl executions list`")
    return row


class Deferred:
    """:class:`Effects` made on the first effect a run asks for: most steps have none (``set``, ``if``, ``wait``),
    and making the live ones (record writer, the account's outbound client) cost more than running them."""

    def __init__(self, make: Callable[[], Effects]) -> None:
        self._make = make
        self._made: Effects | None = None

    def _effects(self) -> Effects:
        if self._made is None:
            self._made = self._make()
        return self._made

    def send_email(self, account: str, mailbox: DirectoryEntry, message: EmailMessage) -> dict[str, Any]:
        return self._effects().send_email(account, mailbox, message)

    def post_channel(self, account: str, channel: DirectoryEntry, payload: dict[str, Any],
                     headers: dict[str, str] | None = None) -> dict[str, Any]:
        return self._effects().post_channel(account, channel, payload, headers)

    def http_request(self, call: HttpCall) -> dict[str, Any]:
        return self._effects().http_request(call)

    def create_record(self, account: str, entity: str, data: dict[str, Any]) -> dict[str, Any]:
        return self._effects().create_record(account, entity, data)

    def update_record(self, account: str, entity: str, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        return self._effects().update_record(account, entity, record_id, data)


def live_effects(engine: Engine, ex: ExecutionRow) -> Effects:
    """Real effects; records written by a step fire record triggers one level deeper."""
    from controller.engine.live import LiveEffects
    from controller.engine.records import RecordService, StepRecords

    return LiveEffects(data_dir=engine.data_dir, records=StepRecords(RecordService(engine, depth=ex.depth + 1)),
                       http=engine.http(engine.config.outbound(ex.workflow_key.split("/", 1)[0])))
