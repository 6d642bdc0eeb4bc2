"""The dry run: the real interpreter over effects that record instead of acting.

Every action resolves its input exactly as in a real run; effectful ones hand their request to
:class:`DryRunEffects`, which writes down the intended side effect ("send e-mail from … to …")
and answers with the output a real run would produce, its made-up ids marked ``synthetic``.
Waits are reported, not waited; ``workflow.call`` dry-runs the called workflow inline. Nothing is
written anywhere: no record, execution row, e-mail, HTTP request, channel post or job.

HTTP calls and channel posts are judged by the outbound-call guard's own function, under the
account's policy, and a refused one fails its step as it would in a real run. No name is looked up
(a dry run has no side effects, DNS included, and runs where the network may not be): what is
judged is the URL as written: addresses in every spelling, ``localhost``, the metadata names.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from controller.engine import scope as scopes
from controller.engine.actions.base import Call, Sleep
from controller.engine.directory import Directory
from controller.engine.effects import HttpCall
from controller.engine.interpreter import Interpreter, Run, default_modules
from controller.engine.queue import ExecutionRow, StepRow
from controller.engine.templating import Templates
from controller.engine.triggers import call
from controller.model.entries import DirectoryEntry
from controller.model.statuses import ExecutionStatus, Failure, StepStatus
from controller.outbound import OutboundPolicy, masked_headers, static_refusal

MAX_DEPTH = 10

Definitions = Callable[[str], Mapping[str, Any] | None]  # workflow name (same account) -> definition
Synthetic = Callable[[str], Any]  # a dotted path nobody gave a value for -> made-up data standing for it


@dataclass
class Intent:
    """One side effect a real run would have had."""

    action_id: str
    kind: str  # email.send | channel.post | http.request | record.create | record.update | wait
    description: str
    fields: dict[str, Any]
    workflow: str = ""  # ACCOUNT/NAME of the workflow whose step it is (a called one, too)
    via: str = ""  # the workflow.call steps it was called through, outermost first ("notify>" or "a>b>")

    def view(self) -> dict[str, Any]:
        return {"action_id": self.action_id, "kind": self.kind, "workflow": self.workflow,
                "description": self.description, **self.fields}


class DryRunEffects:
    """Effects that only write down what would happen; ``outputs`` stand in for real answers."""

    def __init__(self, outputs: Mapping[str, Any] | None = None, read_record: Callable[..., Any] | None = None,
                 synthetic: Synthetic | None = None, *, workflow: str = "", ids: Iterator[int] | None = None,
                 outbound: OutboundPolicy | None = None):
        self._outbound = outbound or OutboundPolicy(account=workflow.split("/", 1)[0])
        self._synthetic = synthetic  # made-up response bodies read as placeholders (synthetic runs)
        self.intents: list[Intent] = []
        self.children: dict[str, list[dict[str, Any]]] = {}  # workflow.call step -> the child's trace
        self.current = ""
        self.workflow = workflow
        self._outputs = outputs or {}
        self._read_record = read_record
        self.ids = ids if ids is not None else itertools.count(1)  # shared with called workflows: unique ids

    def _record(self, kind: str, description: str, fields: dict[str, Any], output: dict[str, Any]) -> dict[str, Any]:
        self.intents.append(Intent(self.current, kind, description, fields, self.workflow))
        given = self._outputs.get(self.current)
        return dict(given) if isinstance(given, Mapping) else output

    def _judge(self, url: str) -> None:
        refused = static_refusal(url, self._outbound)
        if refused is not None:
            raise refused

    def _synthetic_id(self, kind: str) -> str:
        return f"dry-run-{kind}-{next(self.ids)}"

    def send_email(self, account: str, mailbox: DirectoryEntry, message: EmailMessage) -> dict[str, Any]:
        to, cc = _recipients(message, "To"), _recipients(message, "Cc")
        body = message.get_body(preferencelist=("plain", "html"))
        fields = {"mailbox": mailbox.ref, "from": str(message["From"]), "to": to, "cc": cc,
                  **({"bcc": _recipients(message, "Bcc")} if message["Bcc"] else {}),
                  "subject": str(message["Subject"] or ""), "body": body.get_content() if body is not None else ""}
        description = f"send e-mail from {mailbox.ref} to {', '.join(to)}, subject {fields['subject']!r}"
        output = {"message_id": f"<{self._synthetic_id('message')}@dry-run.invalid>", "from": fields["from"],
                  "to": to, "subject": fields["subject"], "synthetic": True}
        return self._record("email.send", description, fields, output)

    def post_channel(self, account: str, channel: DirectoryEntry, payload: dict[str, Any],
                     headers: dict[str, str] | None = None) -> dict[str, Any]:
        self._judge(str(channel.data.get("webhook_url") or ""))
        description = f"post to {channel.ref} ({channel.name or channel.id}): {payload.get('text', '')!r}"
        return self._record("channel.post", description, {"channel": channel.ref, **payload},
                            {"status": 200, "synthetic": True})

    def http_request(self, call: HttpCall) -> dict[str, Any]:
        self._judge(call.url)
        sent = call.json if call.json is not None else call.body
        description = f"{call.method} {call.url}" + (f" with body {_short(sent)}" if sent is not None else "")
        fields = {"method": call.method, "url": call.url, "headers": masked_headers(call.headers), "json": call.json,
                  "body": call.body}
        status = call.expect_status[0] if call.expect_status else 200
        body = self._synthetic(f"steps.{self.current}.output.json") if self._synthetic is not None else {}
        return self._record("http.request", description, fields,
                            {"status": status, "headers": {}, "json": body, "synthetic": True})

    def create_record(self, account: str, entity: str, data: dict[str, Any]) -> dict[str, Any]:
        description = f"create {entity}: " + ", ".join(f"{k}={_short(v)}" for k, v in data.items())
        record = {"id": self._synthetic_id(entity), "type": entity, **data, "synthetic": True}
        return self._record("record.create", description, {"entity": entity, "set": data}, record)

    def update_record(self, account: str, entity: str, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        description = f"update {entity} {record_id}: " + ", ".join(f"{k}={_short(v)}" for k, v in data.items())
        current: dict[str, Any] = {"id": record_id, "type": entity}
        if self._read_record is not None:
            current = self._read_record(account, entity, record_id) or current
        return self._record("record.update", description, {"entity": entity, "record_id": record_id, "set": data},
                            {**current, **data, "synthetic": True})


class SyntheticDirectory:
    """Stands in for an account directory that is not loaded (CI): every reference exists, made up."""

    def __init__(self, real: Directory | None = None):
        self._real = real

    def get(self, account: str, ref: str) -> DirectoryEntry | None:
        found = self._real.get(account, ref) if self._real is not None else None
        if found is not None:
            return found
        kind, _, ref_id = ref.partition(":")
        data = {"email": f"{ref_id}@dry-run.invalid", "address": f"{ref_id}@dry-run.invalid", "kind": "outbox",
                "webhook_url": f"https://dry-run.invalid/{ref_id}"}
        return DirectoryEntry(kind, ref_id, name=f"{ref_id} (synthetic)", data=data)


@dataclass
class DryRunResult:
    workflow: str
    status: str  # succeeded | failed
    error: str | None
    output: Any
    steps: list[dict[str, Any]]
    intents: list[Intent] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == ExecutionStatus.SUCCEEDED

    def view(self) -> dict[str, Any]:
        return {"workflow": self.workflow, "status": self.status, "error": self.error, "output": self.output,
                "steps": self.steps, "intents": [i.view() for i in self.intents]}


class DryRunner:
    """Dry-runs workflows of one account; ``definitions`` finds the ones ``workflow.call`` names."""

    def __init__(self, *, account: str, directory: Directory, definitions: Definitions, now: Callable[[], datetime],
                 templates: Templates | None = None, read_record: Callable[..., Any] | None = None,
                 outbound: OutboundPolicy | None = None):
        self.account = account
        self.outbound = outbound or OutboundPolicy(account=account)
        self.definitions = definitions
        self.read_record = read_record
        self.interpreter = Interpreter(templates or Templates(), directory, default_modules(), now)

    def run(self, name: str, definition: Mapping[str, Any], *, trigger: dict[str, Any],
            record: dict[str, Any] | None = None, outputs: Mapping[str, Any] | None = None,
            depth: int = 0, synthetic: Synthetic | None = None, ids: Iterator[int] | None = None,
            stop: Callable[[], bool] = lambda: False) -> DryRunResult:
        """Dry-run ``definition`` of workflow ``name``; ``synthetic`` makes up the answers nobody gave.

        ``stop`` is asked before each action (of called workflows too): when it says yes the run ends there,
        still ``running`` (a caller's time budget)."""
        key = f"{self.account}/{name}"
        effects = DryRunEffects(outputs, self.read_record, synthetic, workflow=key, ids=ids, outbound=self.outbound)
        now = self.interpreter.now()
        execution = ExecutionRow(id=0, workflow_id=0, workflow_key=key, version=None,
                                 status=ExecutionStatus.RUNNING, trigger=trigger, record_ref=None, depth=depth,
                                 parent_id=None, parent_step=None, retry_of=None, cancel_requested=False,
                                 created_at=now, started_at=now)
        scope = scopes.build(workflow=key, version=None, trigger=trigger, record=record, now=now,
                             execution={"id": None, "dry_run": True})
        run_class = _inline(self, effects, outputs or {}, record, depth, synthetic, stop)
        self.interpreter.run(execution, definition, scope, effects, lambda _ex: None, stop, run_class=run_class)
        return DryRunResult(key, execution.status, execution.error, execution.output,
                            [_step_view(s, effects, key) for s in execution.steps.values()], effects.intents)


def _inline(runner: DryRunner, effects: DryRunEffects, outputs: Mapping[str, Any], record: dict[str, Any] | None,
            depth: int, synthetic: Synthetic | None, stop: Callable[[], bool]) -> type[Run]:
    """A Run that waits without waiting and runs calls in place."""

    class Inline(Run):
        def _context(self, action: dict[str, Any], now: datetime, key: str | None = None) -> Any:
            effects.current = action["id"]
            return super()._context(action, now, key)

        def sleep(self, action: dict[str, Any], step: StepRow, outcome: Sleep) -> bool:
            effects.current = action["id"]
            effects.intents.append(Intent(action["id"], "wait", f"wait {action.get('duration')} "
                                          f"({outcome.seconds} s), not waited in a dry run",
                                          {"seconds": outcome.seconds}, effects.workflow))
            step.status, step.finished_at, step.wait_seconds = StepStatus.SUCCEEDED, self.i.now(), 0
            step.output = {"would_wait_seconds": outcome.seconds}
            return self._absorb(action, step)

        def call(self, action: dict[str, Any], step: StepRow, outcome: Call) -> bool:
            definition = runner.definitions(outcome.workflow)
            if definition is None or depth + 1 > MAX_DEPTH:
                why = "does not exist" if definition is None else f"nests deeper than {MAX_DEPTH}"
                return self._fail(step, f"step {action['id']}: called workflow {outcome.workflow} {why}",
                                  Failure.GUARD)
            child = runner.run(outcome.workflow, definition, record=record, depth=depth + 1, outputs=outputs,
                               trigger=call.payload(outcome.input, {"dry_run": True}), synthetic=synthetic,
                               ids=effects.ids, stop=stop)
            for intent in child.intents:
                intent.via = f"{action['id']}>{intent.via}"
            effects.intents.extend(child.intents)
            effects.children[action["id"]] = child.steps
            if not child.ok:
                return self._fail(step, f"step {action['id']}: called workflow {child.workflow} failed: {child.error}",
                                  Failure.CALL)
            step.status, step.finished_at, step.output = StepStatus.SUCCEEDED, self.i.now(), child.output
            return self._absorb(action, step)

    return Inline


def _step_view(step: StepRow, effects: DryRunEffects, key: str) -> dict[str, Any]:
    # This workflow's own intent: a called workflow may have a step of the same id.
    intent = next((i for i in effects.intents if i.action_id == step.action_id and i.workflow == key), None)
    view = {"action_id": step.action_id, "type": step.type, "status": step.status, "input": step.input,
            "output": step.output, "error": step.error, "intent": intent.description if intent else None}
    if step.type == "if" and isinstance(step.output, dict):
        view["branch"] = step.output.get("branch")
    if step.action_id in effects.children:
        view["steps"] = effects.children[step.action_id]
    return view


def _recipients(message: EmailMessage, header: str) -> list[str]:
    """The addresses of one header as the message holds them (parsed: a display name may hold a comma)."""
    found = message[header]
    return [str(address) for address in found.addresses] if found is not None else []


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
