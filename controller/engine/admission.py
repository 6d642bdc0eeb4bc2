"""The one way in: every execution is created by :meth:`Admission.admit`.

Triggers of every kind (record, schedule, inactivity, e-mail, webhook, manual runs from the CLI
and the API, ``workflow.call`` children and retries) describe what they want as a
:class:`Request`. Admission applies, in this order:

1. the guards: the workflow is known and not deleted, has a valid version, is enabled, and
   whatever :attr:`Admission.guards` adds after those (the seam where the safeguards put
   "suspended");
2. the trigger's ``when``, for the kinds an event starts (record, inactivity, e-mail, schedule);
   a run someone asked for, a call and a retry are not filtered;
3. the rate limit: the version's ``spec.rateLimit``, else the account default of the
   configuration, counted over the store so that it holds across processes; a call or a retry
   draws on the budget of the workflow it starts;
4. the concurrency limit, the version's ``spec.concurrency`` (:mod:`controller.engine.concurrency`):
   ``queue`` admits (the claim starts it when a slot frees), ``drop`` drops and counts the trigger
   as the rate limit does, ``cancel-oldest`` admits it and terminates the oldest executions to make
   room. It comes after the rate limit so that nothing is terminated for a trigger that is dropped;
5. the queue row. While a restore of the workflow waits for its executions in flight, the row is
   queued but held (the workers do not claim it) and starts on the restored version.

The answer is a :class:`Verdict`, a value: started (with the execution id), filtered, dropped or
refused, with the reason. Nothing raises for a "no"; callers map the verdict to their own answer
(HTTP 202/404/409/429, CLI exit 0/2/3, a log line). Each decision about a record, and every drop
and refusal, is written to the trigger-decision table in the same transaction as the execution it
made or did not make: that is the record's timeline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from controller.engine import concurrency, queue
from controller.engine import scope as scopes
from controller.engine.templating import Templates
from controller.engine.versions import Versions
from controller.errors import GuardError, NotFoundError, RateLimited, WfcError
from controller.metrics import rollup
from controller.model.statuses import Decision
from controller.safeguards import ratelimit
from controller.store import decisions
from controller.store.tables import workflow_suspensions, workflows

log = logging.getLogger(__name__)

KINDS = ("record", "schedule", "inactivity", "email", "webhook", "manual", "call", "retry")
"""What can ask for an execution: the six trigger types, a ``workflow.call`` and a retry."""
FILTERED_KINDS = frozenset({"record", "inactivity", "email", "schedule"})
"""The kinds an event starts: their trigger's ``when`` decides."""
DROP_LOG_SECONDS = 60  # a workflow's drops are logged at most once a minute

w = workflows.c
_SUSPENDED = (select(workflow_suspensions.c.reason).where(workflow_suspensions.c.workflow_id == w.id)
              .scalar_subquery().label("suspended"))
TARGET_COLUMNS = (w.id, w.key, w.version, w.enabled, w.deleted, w.content_hash, w.sync, w.message, _SUSPENDED)
"""The columns a :class:`Target` is made of, selected from ``workflows`` (for callers that read the row
themselves); the suspension comes with it, so the guard asks nothing more of the store."""


@dataclass(frozen=True)
class Target:
    """The workflow row admission decides on."""

    id: int
    key: str
    version: int
    enabled: bool
    deleted: bool
    valid: bool  # has an applied version (an invalid file keeps the last good one)
    sync: str  # Synced | Invalid | Blocked
    message: str
    suspended: str | None = None  # why the controller suspended it (controller.safeguards.suspension)

    @property
    def account(self) -> str:
        return self.key.split("/", 1)[0]

    @classmethod
    def of(cls, row: Any) -> Target:
        return cls(row.id, row.key, row.version, row.enabled, row.deleted, row.content_hash is not None, row.sync,
                   row.message, row.suspended)


def read_target(conn: Connection, key: str) -> Target | None:
    row = conn.execute(select(*TARGET_COLUMNS).where(w.key == key)).first()
    return Target.of(row) if row is not None else None


@dataclass(frozen=True)
class Request:
    """An ask for one execution of ``key``; ``trigger`` is its ``trigger.*`` payload."""

    key: str
    kind: str  # one of KINDS
    trigger: Mapping[str, Any]
    record_ref: Mapping[str, Any] | None = None
    depth: int = 0
    version: int | None = None  # pinned (a retry on the original's version); else the current one at start
    retry_of: int | None = None
    parent: tuple[int, str] | None = None  # (execution id, step id) of a workflow.call

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown trigger kind {self.kind!r}")


@dataclass(frozen=True)
class Verdict:
    """What admission made of a request."""

    decision: Decision
    workflow: str
    reason: str = ""
    execution_id: int | None = None
    version: int | None = None
    retry_after: int | None = None  # dropped: seconds until the rate limit (or the concurrency limit) may have room
    missing: bool = False  # refused because the workflow is unknown or deleted

    @property
    def started(self) -> bool:
        return self.decision == Decision.STARTED

    def error(self) -> WfcError:
        """The error an explicit caller (CLI, API, a calling step) reports for a verdict that is not a start."""
        if self.decision == Decision.DROPPED:
            return RateLimited(self.reason, workflow=self.workflow, retry_after=self.retry_after or 1)
        if self.missing:
            return NotFoundError(self.reason, workflow=self.workflow)
        return GuardError(self.reason, workflow=self.workflow)  # (explicit callers are never filtered)

    def execution(self) -> int:
        """The execution id; raises :meth:`error` when nothing was started."""
        if self.execution_id is None:
            raise self.error()
        return self.execution_id


Guard = Callable[[Connection, Target, Request], str | None]
"""A guard returns why the request is refused, or None to let it through."""


def invalid(conn: Connection, target: Target, request: Request) -> str | None:
    return None if target.valid else f"{target.key} has no valid version to run ({target.message})"


def disabled(conn: Connection, target: Target, request: Request) -> str | None:
    if target.enabled:
        return None
    return f"{target.key} is disabled (spec.enabled: false); enable it in git to run it"


GUARDS: tuple[Guard, ...] = (invalid, disabled)

Observer = Callable[[Connection, Target, Request, Verdict], None]
"""Told of a decision in its transaction (use controller.store.db.after_commit to act once it holds)."""

CancelOldest = Callable[[Connection, int, str], int | None]
"""``(conn, workflow id, reason)``: terminates the workflow's oldest execution queued, running or waiting (not
already asked to cancel); the id it stopped, or None. The engine provides it, over its lifecycle
(:func:`controller.engine.concurrency.terminate_oldest`)."""


class Admission:
    """The admission policy of one engine."""

    def __init__(self, *, templates: Templates, versions: Versions, now: Callable[[], datetime],
                 default_limit: Callable[[str], Mapping[str, Any] | None] = lambda account: None,
                 guards: Iterable[Guard] = GUARDS) -> None:
        self.templates = templates
        self.versions = versions
        self.now = now
        self.default_limit = default_limit
        self.guards: list[Guard] = list(guards)
        self.observers: list[Observer] = []  # told of every decision about a known workflow (Prometheus)
        # For spec.concurrency behavior cancel-oldest; without it (no engine) such a workflow queues instead.
        self.cancel_oldest: CancelOldest | None = None
        self._drops = _DropLog()

    def admit(self, conn: Connection, request: Request, target: Target | None = None,
              definition: Mapping[str, Any] | None = None) -> Verdict:
        """Decide on ``request`` in ``conn``'s transaction; queue the execution when it is admitted.

        ``target`` and ``definition`` may be passed by a caller that has read them already (a
        trigger's listener, webhook intake); otherwise they are read here.
        """
        now = self.now()
        target = target or read_target(conn, request.key)
        if target is None or target.deleted:
            why = f"no workflow {request.key!r}; see `wfctl status`"
            verdict = Verdict(Decision.REFUSED, request.key, why, missing=True)
            return self._note(conn, request, target, verdict, now) if target is not None else verdict
        verdict = self._decide(conn, request, target, definition, now)
        return self._note(conn, request, target, verdict, now)

    def _decide(self, conn: Connection, request: Request, target: Target, definition: Mapping[str, Any] | None,
                now: datetime) -> Verdict:
        for guard in self.guards:
            reason = guard(conn, target, request)
            if reason is not None:
                return Verdict(Decision.REFUSED, target.key, reason)
        definition = definition or self.versions.content(conn, target.id, target.version)
        if request.kind in FILTERED_KINDS:
            decided = self.when(target, definition, request.trigger, now)
            if not decided.started:
                return Verdict(Decision.FILTERED, target.key, decided.reason, version=target.version)
        # A retry pinned to the original's version draws on the budget the workflow has now.
        limit = ratelimit.of(definition, self.default_limit(target.account))
        if limit is not None:
            wait = ratelimit.retry_after(conn, target.id, limit, now)
            if wait is not None:
                ratelimit.count_drop(conn, target.id, now)
                self._drops.log(target.key, request.kind, f"over its rate limit ({limit.text})", now)
                return Verdict(Decision.DROPPED, target.key, f"{target.key} is over its rate limit ({limit.text}); "
                               f"the trigger was dropped and counted", version=target.version, retry_after=wait)
        bound = concurrency.of(definition)
        if bound is not None and bound.behavior != "queue":
            queue.lock_workflow(conn, target.id)  # counted under the lock the claims of the workflow take too
            if bound.behavior == "drop" and concurrency.active(conn, target.id) >= bound.limit:
                at_limit = f"at its concurrency limit ({bound.limit} queued, running or waiting)"
                ratelimit.count_drop(conn, target.id, now)
                self._drops.log(target.key, request.kind, at_limit, now)
                return Verdict(Decision.DROPPED, target.key, f"{target.key} is {at_limit}; the trigger was dropped "
                               f"and counted", version=target.version, retry_after=concurrency.RETRY_AFTER)
        parent_id, parent_step = request.parent or (None, None)
        execution_id = queue.enqueue(conn, [{
            "workflow_id": target.id, "workflow_key": target.key, "trigger": dict(request.trigger),
            "record_ref": dict(request.record_ref) if request.record_ref else None, "depth": request.depth,
            "version": request.version, "retry_of": request.retry_of, "parent_id": parent_id,
            "parent_step": parent_step}], now)[0]
        notes = ["held: a restore of the workflow waits for its executions in flight"] if target.sync == "Blocked" else []
        if bound is not None and bound.behavior == "cancel-oldest":
            notes += self._make_room(conn, target, bound, execution_id)
        return Verdict(Decision.STARTED, target.key, "; ".join(notes), execution_id, request.version or target.version)

    def _make_room(self, conn: Connection, target: Target, bound: concurrency.Concurrency,
                   execution_id: int) -> list[str]:
        """cancel-oldest: terminate the oldest executions until the new one fits in the limit; notes of it."""
        if self.cancel_oldest is None:
            return []
        why = (f"terminated to make room for execution {execution_id}: {target.key} allows {bound.limit} at a time "
               f"(spec.concurrency behavior cancel-oldest)")
        stopped: list[int] = []
        # Those already asked to cancel are on their way out (their slot frees at their next step).
        for _ in range(concurrency.active(conn, target.id, cancelling=False) - bound.limit):
            victim = self.cancel_oldest(conn, target.id, why)
            if victim is None:
                break
            stopped.append(victim)
        if not stopped:
            return []
        listed = ", ".join(str(i) for i in stopped)
        return [f"at its concurrency limit ({bound.limit}): execution(s) {listed} terminated to make room"]

    def when(self, target: Target, definition: Mapping[str, Any], trigger: Mapping[str, Any],
             now: datetime) -> scopes.When:
        """The trigger's ``when`` over the scope the run would have."""
        decided = scopes.trigger_when(self.templates, definition["spec"]["trigger"], workflow=target.key,
                                        version=target.version, trigger=trigger, now=now)
        if decided.broken:
            log.warning("%s: not started: %s", target.key, decided.reason)
        return decided

    def _note(self, conn: Connection, request: Request, target: Target, verdict: Verdict, now: datetime) -> Verdict:
        """Keep the decision when it is about a record, or when nothing started; count what did not
        start in the workflow's metrics; tell the observers."""
        for observe in self.observers:
            observe(conn, target, request, verdict)
        ref = request.record_ref
        if ref is None and verdict.started:
            return verdict
        rollup.count_decision(conn, workflow_id=target.id, account=target.account,
                              version=verdict.version or target.version,
                              decision=verdict.decision, at=now)
        decisions.add(conn, [{
            "at": now, "account": target.account, "workflow_id": target.id, "workflow_key": target.key,
            "version": verdict.version, "trigger": request.kind, "decision": str(verdict.decision),
            "reason": verdict.reason, "execution_id": verdict.execution_id,
            "record_type": str(ref["type"]) if ref else None, "record_id": str(ref["id"]) if ref else None,
            "event": decisions.kept_event(request.trigger) if verdict.decision == Decision.FILTERED else None}])
        return verdict


class _DropLog:
    """Logs a workflow's drops at most once a minute per cause, with how many were not logged."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[datetime, int, set[str]]] = {}
        self._lock = threading.Lock()

    def log(self, key: str, kind: str, cause: str, now: datetime) -> None:
        """``cause`` completes "<key> is ...": "over its rate limit (2 per 1h)"."""
        with self._lock:
            last, unlogged, kinds = self._last.get((key, cause), (None, 0, set()))
            kinds = kinds | {kind}
            if last is not None and (now - last).total_seconds() < DROP_LOG_SECONDS:
                self._last[(key, cause)] = (last, unlogged + 1, kinds)
                return
            self._last[(key, cause)] = (now, 0, set())
        log.warning("%s is %s: dropped %d trigger(s) (%s) since the last report",
                    key, cause, unlogged + 1, ", ".join(sorted(kinds)))
