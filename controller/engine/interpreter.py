"""The interpreter: run one execution from where it stands until it finishes or must wait.

It replays the action tree: a step that already succeeded is not run again, its output is put
back into scope (and an ``if`` takes the branch it took before), so resuming after a wait, a retry
back-off or a crashed worker continues from the last finished step. Each action runs with its
``{{ … }}`` resolved against ``record``, ``trigger``, ``steps``, ``vars``, ``workflow``, ``account``
and ``now``; side effects go through the effects object. Pure steps (``set``, ``if``, ``wait``)
are written with the segment. What a crash can do to the others:

- **internal effects** (``record.create``, ``record.update``: our own store) run inside the step's
  unit of work (:mod:`controller.engine.unit`): the write and the checkpoint that marks the step
  succeeded commit in one transaction, so they happen exactly once;
- **external effects** (``email.send``, ``channel.post``, ``http.request``) are at least once, and
  visibly so: the attempt is committed (step ``running``, attempt n, idempotency key) before the
  call; a step found ``running`` when its execution resumes was lost mid-call, and the next
  attempt is logged as such in ``attempt_log``. Every attempt carries the same key (a deterministic
  ``Message-ID``; an ``Idempotency-Key`` header on non-GET calls and channel posts), so the
  receiver can tell a repeat.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.engine.actions import branch, set_vars, wait, workflow_call
from controller.engine.actions.base import ActionContext, ActionModule, Call, Outcome, Sleep, recorded_input
from controller.engine.caps import capped
from controller.engine.directory import Directory
from controller.engine.effects import Effects
from controller.engine.lifecycle import transition
from controller.engine.queue import ExecutionRow, StepRow
from controller.engine.templating import Templates
from controller.errors import ExecutionError, TransientError
from controller.model import parse_duration
from controller.model.statuses import ExecutionStatus, Failure, StepStatus

log = logging.getLogger(__name__)

PURE = frozenset({"set", "if", "wait"})
INTERNAL = frozenset({"record.create", "record.update"})  # exactly once: in the step's transaction
EXTERNAL = frozenset({"email.send", "channel.post", "http.request"})  # at least once, with a key
IDEMPOTENCY_HEADER = "Idempotency-Key"


def idempotency_key(execution_id: int, action_id: str) -> str:
    """The key every attempt of one step sends: the same for a repeat, another for another step."""
    return "wfc-" + hashlib.sha256(f"{execution_id}/{action_id}".encode()).hexdigest()[:32]


def default_modules() -> dict[str, ActionModule]:
    from controller.engine.actions import (
        channel_post,
        email_send,
        http_request,
        record_create,
        record_update,
    )

    return {
        "email.send": email_send, "channel.post": channel_post, "http.request": http_request,
        "record.create": record_create, "record.update": record_update, "wait": wait, "if": branch,
        "set": set_vars, "workflow.call": workflow_call,
    }  # type: ignore[dict-item]


Unit = Callable[[], AbstractContextManager[Any]]


@dataclass
class Segment:
    """What one run of the interpreter asks of the caller besides the execution's new state."""

    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (action id, workflow, input)


@dataclass
class Interpreter:
    templates: Templates
    directory: Directory
    modules: Mapping[str, ActionModule]
    now: Callable[[], datetime]
    idempotency_header: str = IDEMPOTENCY_HEADER  # "" sends no header

    def run(self, execution: ExecutionRow, definition: Mapping[str, Any], scope: dict[str, Any], effects: Effects,
            checkpoint: Callable[[ExecutionRow], None], stop: Callable[[], bool] = lambda: False,
            run_class: type[Run] | None = None, unit: Unit | None = None) -> Segment:
        """Advance ``execution`` (mutated in place); scope holds record, trigger, workflow, account.

        ``stop`` is asked before each action: when it says yes (shutdown) the execution stays
        ``running`` where it is, and the caller releases it for another worker. ``run_class``
        changes what waits and calls do (the dry run does them inline). ``unit`` opens the
        transaction an internal effect and its checkpoint share (none: they are not written).
        """
        run = (run_class or Run)(self, execution, effects, checkpoint, scope, stop)
        run.unit = unit or nullcontext
        if run.actions(definition["spec"]["actions"]):
            execution.output = capped(scope["vars"])
            transition(execution, ExecutionStatus.SUCCEEDED, self.now())
        return run.segment


class Run:
    """The state of one segment; ``actions`` returns False when the execution must stop here.

    ``sleep`` and ``call`` are what a durable run does with a ``wait`` and a ``workflow.call``:
    park the execution. A subclass may do them differently (the dry run does them inline).
    """

    def __init__(self, interpreter: Interpreter, execution: ExecutionRow, effects: Effects,
                 checkpoint: Callable[[ExecutionRow], None], scope: dict[str, Any], stop: Callable[[], bool]):
        self.i = interpreter
        self.stop = stop
        self.ex = execution
        self.effects = effects
        self.checkpoint = checkpoint
        self.unit: Unit = nullcontext
        self.scope = scope
        scope.setdefault("vars", {})
        scope.setdefault("steps", {})
        self.segment = Segment()

    def actions(self, actions: list[dict[str, Any]]) -> bool:
        return all(self.action(a) for a in actions)

    def action(self, action: dict[str, Any]) -> bool:
        step = self.ex.steps.get(action["id"])
        if step is not None and step.status == StepStatus.SUCCEEDED:
            return self._absorb(action, step)
        if self.stop():
            return False
        if step is not None and step.status == StepStatus.FAILED:
            return self._fail(step, step.error or "failed", step.failure or Failure.INTERNAL)
        if step is not None and step.status == StepStatus.WAITING:
            if step.wake_at is None or step.wake_at > self.i.now():  # not due yet, or a child still runs
                return self._stop(step.wake_at)
            if action["type"] == "wait":
                return self._finish_wait(action, step)
        return self._attempt(action, step)

    def _attempt(self, action: dict[str, Any], step: StepRow | None) -> bool:
        now = self.i.now()
        kind = action["type"]
        if step is None:
            step = StepRow(action["id"], kind, seq=len(self.ex.steps) + 1, started_at=now)
            self.ex.steps[step.action_id] = step
        elif step.status == StepStatus.RUNNING:  # its attempt was committed and never finished
            lost = f"worker lost during attempt {step.attempts}"
            step.attempt_log.append({"attempt": step.attempts, "at": now.isoformat(), "outcome": lost})
            log.warning("execution %s step %s: %s; attempt %d (key %s)", self.ex.id, action["id"], lost,
                        step.attempts + 1, step.idempotency_key)
        step.status, step.attempts, step.wake_at, step.error = StepStatus.RUNNING, step.attempts + 1, None, None
        self.scope["now"] = now.isoformat()
        try:
            inputs = self.i.templates.render_step({k: v for k, v in action.items() if k not in ("then", "else")},
                                                  self.scope, action.get("timeout"))
            module = self.i.modules[kind]
            step.input = capped(recorded_input(module, inputs))
            if kind in EXTERNAL and self.ex.id:  # (a dry run has no execution and writes nothing)
                step.idempotency_key = idempotency_key(self.ex.id, action["id"])
                self.checkpoint(self.ex)  # the attempt is on record before the call starts
            context = self._context(action, now, step.idempotency_key)
            if kind in INTERNAL:
                with self.unit():  # the write and the checkpoint of its success: one commit
                    return self._outcome(action, step, module.run(inputs, context))
            outcome = module.run(inputs, context)
        except TransientError as e:
            return self._retry_or_fail(action, step, str(e), e.failure)
        except ExecutionError as e:  # (a TemplateError too: its failure class says so)
            return self._fail(step, f"step {action['id']}: {e}", e.failure)
        except Exception as e:  # a bug in an action must fail the step, not kill the worker
            log.exception("action %s of execution %s raised", action["id"], self.ex.id)
            return self._fail(step, f"step {action['id']}: internal error: {type(e).__name__}: {e}", Failure.INTERNAL)
        return self._outcome(action, step, outcome)

    def _outcome(self, action: dict[str, Any], step: StepRow, outcome: Outcome) -> bool:
        now = self.i.now()
        if isinstance(outcome, Sleep):
            return self.sleep(action, step, outcome)
        if isinstance(outcome, Call):
            return self.call(action, step, outcome)
        step.output = capped(outcome.output)
        step.status, step.finished_at = StepStatus.SUCCEEDED, now
        if action["type"] not in PURE:
            self.checkpoint(self.ex)
        return self._absorb(action, step)

    def sleep(self, action: dict[str, Any], step: StepRow, outcome: Sleep) -> bool:
        step.status, step.wake_at, step.output = StepStatus.WAITING, self.i.now() + timedelta(seconds=outcome.seconds), None
        return self._stop(step.wake_at)

    def call(self, action: dict[str, Any], step: StepRow, outcome: Call) -> bool:
        step.status, step.output = StepStatus.WAITING, {"workflow": outcome.workflow}
        self.segment.calls.append((action["id"], outcome.workflow, outcome.input))
        return self._stop(None)

    def _absorb(self, action: dict[str, Any], step: StepRow) -> bool:
        """Put a finished step's output into scope; an ``if`` continues into its branch."""
        self.scope["steps"][action["id"]] = {"output": step.output}
        if action["type"] == "set":
            self.scope["vars"].update(step.output or {})
        if action["type"] == "if":
            taken = (step.output or {}).get("branch", "else")
            return self.actions(action.get(taken) or [])
        return True

    def _finish_wait(self, action: dict[str, Any], step: StepRow) -> bool:
        now = self.i.now()
        step.status, step.finished_at, step.wake_at = StepStatus.SUCCEEDED, now, None
        step.wait_seconds = int((now - step.started_at).total_seconds())
        step.output = {"waited_seconds": step.wait_seconds}
        return self._absorb(action, step)

    def _retry_or_fail(self, action: dict[str, Any], step: StepRow, message: str, failure: str) -> bool:
        retry = action.get("retry") or {}
        if step.attempts >= int(retry.get("attempts", 1)):
            suffix = f" (after {step.attempts} attempts)" if step.attempts > 1 else ""
            return self._fail(step, f"step {action['id']}: {message}{suffix}", failure)
        delay = parse_duration(retry.get("backoff", "30s")) * 2 ** (step.attempts - 1)
        step.status, step.error = StepStatus.WAITING, message
        step.wake_at = self.i.now() + timedelta(seconds=delay)
        log.info("execution %s step %s failed (%s); attempt %d in %ds", self.ex.id, action["id"], message,
                 step.attempts + 1, delay)
        return self._stop(step.wake_at)

    def _fail(self, step: StepRow, message: str, failure: str) -> bool:
        now = self.i.now()
        if step.status != StepStatus.FAILED:
            step.status, step.error, step.finished_at, step.failure = StepStatus.FAILED, message, now, failure
        transition(self.ex, ExecutionStatus.FAILED, now, error=message, failure=failure)
        return False

    def _stop(self, wake_at: datetime | None) -> bool:
        transition(self.ex, ExecutionStatus.WAITING, self.i.now(), wake_at=wake_at)
        return False

    def _context(self, action: dict[str, Any], now: datetime, key: str | None = None) -> ActionContext:
        return ActionContext(account=self.scope["account"], workflow=self.ex.workflow_key, action_id=action["id"],
                             now=now, directory=self.i.directory, effects=self.effects, execution_id=self.ex.id,
                             idempotency_key=key, idempotency_header=self.i.idempotency_header)
