"""Running a workflow's test cases (or one synthetic case) as dry runs, and judging expectations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.check.cases import Case, Expect, Mismatch, matches
from controller.check.synthetic import synthetic_data, synthetic_record
from controller.engine import scope as scopes
from controller.engine import triggers
from controller.engine.dryrun import DryRunner, DryRunResult
from controller.engine.triggers import call
from controller.engine.triggers.base import Given


@dataclass
class CaseResult:
    workflow: str
    name: str
    mismatches: list[Mismatch] = field(default_factory=list)
    result: DryRunResult | None = None
    started: bool = True
    synthetic: bool = False
    path: str = ""  # the file the case comes from: its tests file, or the workflow file (synthetic)
    line: int = 1  # where in that file

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def view(self) -> dict[str, Any]:
        return {"workflow": self.workflow, "case": self.name, "path": self.path, "line": self.line, "ok": self.ok,
                "synthetic": self.synthetic, "started": self.started, "failures": [str(m) for m in self.mismatches],
                "dry_run": self.result.view() if self.result else None}


def run_case(runner: DryRunner, name: str, definition: Mapping[str, Any], case: Case, *,
             record: dict[str, Any] | None = None, synthetic: bool = False) -> CaseResult:
    """Dry-run one case of workflow ``name`` and compare with what it expects.

    ``record`` replaces the case's entity (a real record read from the store, or a synthetic one).
    """
    key = f"{runner.account}/{name}"
    spec = definition["spec"]["trigger"]
    trigger, record = trigger_for(spec, case, record, synthetic=synthetic, now=runner.interpreter.now())
    outcome = CaseResult(key, case.name, synthetic=synthetic)
    unknown = unknown_actions(runner, definition, case.expect)
    started, why = _when(runner, key, spec, trigger, record)
    if not started:
        outcome.started = False
        outcome.mismatches = list(unknown)
        if case.expect.status != "not_started" and not synthetic:  # made-up data may well not match
            outcome.mismatches.append(Mismatch("started", True, why))
        return outcome
    result = runner.run(name, definition, trigger=trigger, record=record, outputs=case.outputs,
                        synthetic=synthetic_data if synthetic else None)
    outcome.result = result
    named = {m.what for m in unknown}  # said once: "no such action", not also "did not run"
    outcome.mismatches = unknown + [m for m in judge(case.expect, result) if m.what not in named]
    return outcome


def unknown_actions(runner: DryRunner, definition: Mapping[str, Any], expect: Expect) -> list[Mismatch]:
    """Action ids an expectation names that neither the workflow nor one it calls has (a typo)."""
    known = _action_ids(runner, definition["spec"]["actions"], set())
    named = [("ran", expect.ran), ("skipped", expect.skipped), ("branches", expect.branches),
             ("effects", expect.effects)]
    return [Mismatch(f"{where}.{action_id}", "an action of the workflow or of one it calls", "no such action")
            for where, ids in named for action_id in ids if action_id not in known]


def _action_ids(runner: DryRunner, actions: list[dict[str, Any]], seen: set[str]) -> set[str]:
    ids: set[str] = set()
    for action in actions:
        ids.add(action["id"])
        for branch in ("then", "else"):
            ids |= _action_ids(runner, action.get(branch) or [], seen)
        called = str(action.get("workflow", "")) if action["type"] == "workflow.call" else ""
        if called and called not in seen:
            seen.add(called)
            found = runner.definitions(called)
            if found is not None:
                ids |= _action_ids(runner, found["spec"]["actions"], seen)
    return ids


def synthetic_case(definition: Mapping[str, Any]) -> tuple[Case, dict[str, Any] | None]:
    """A case for a workflow without tests, and a made-up record of its trigger's entity type."""
    spec = definition["spec"]["trigger"]
    entity = spec.get("entity") or (spec.get("entities") or [None])[0]
    case = Case(name="synthetic", email={"from": "someone@example.com", "subject": "Hello", "text": "Hello"})
    return case, synthetic_record(entity) if entity else None


def trigger_for(spec: Mapping[str, Any], case: Case, record: dict[str, Any] | None = None, *,
                synthetic: bool = False, now: datetime | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The trigger input and the record a real trigger of this type would give the execution."""
    if record is None and case.entity is not None:
        record = dict(case.entity)
    if record is not None:
        record.setdefault("id", "1")
    if case.input is not None:
        return call.payload(case.input, {"dry_run": True}), record
    given = Given(record=record, payload=case.payload, email=case.email, now=now,
                  synthetic=synthetic_data if synthetic else None)
    return triggers.module(spec["type"]).sample(spec, given), record


def judge(expect: Expect, result: DryRunResult) -> list[Mismatch]:
    """Every way the dry run differs from what the case expects."""
    found: list[Mismatch] = []
    status = expect.status or "succeeded"
    if result.status != status:
        found.append(Mismatch("status", status, f"{result.status}" + (f" ({result.error})" if result.error else "")))
    steps = _flatten(result.steps)
    ran = {s["action_id"] for s in steps}
    found += [Mismatch(f"ran.{a}", "ran", "did not run") for a in expect.ran if a not in ran]
    found += [Mismatch(f"skipped.{a}", "skipped", "ran") for a in expect.skipped if a in ran]
    branches: dict[str, Any] = {}
    for step in steps:  # nearest first: the workflow's own `if`, not a called one's of the same id
        if step["type"] == "if":
            branches.setdefault(step["action_id"], step.get("branch"))
    for action_id, branch in expect.branches.items():
        if branches.get(action_id) != branch:
            found.append(Mismatch(f"branches.{action_id}", branch, branches.get(action_id, "did not run")))
    intents: dict[str, dict[str, Any]] = {}
    for intent in sorted(result.intents, key=lambda i: i.workflow != result.workflow):  # own first, stable
        intents.setdefault(intent.action_id, intent.view())
    for action_id, fields in expect.effects.items():
        effect = intents.get(action_id)
        if effect is None:
            found.append(Mismatch(f"effects.{action_id}", "a side effect", "none"))
            continue
        found += [Mismatch(f"effects.{action_id}.{name}", want, effect.get(name))
                  for name, want in fields.items() if not matches(want, effect.get(name))]
    output = result.output or {}
    found += [Mismatch(f"output.{name}", want, output.get(name))
              for name, want in expect.output.items() if not matches(want, output.get(name))]
    if expect.error is not None and not matches(expect.error, result.error):
        found.append(Mismatch("error", expect.error, result.error))
    return found


def _flatten(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every step, called workflows' too, level by level: the workflow's own steps come first."""
    flat, level = [], steps
    while level:
        flat += level
        level = [child for step in level for child in step.get("steps") or []]
    return flat


def _when(runner: DryRunner, key: str, spec: Mapping[str, Any], trigger: dict[str, Any],
          record: dict[str, Any] | None) -> tuple[bool, str]:
    """The trigger's ``when``, by admission's function, over the scope of a dry run."""
    decided = scopes.trigger_when(runner.interpreter.templates, spec, workflow=key, version=None, trigger=trigger,
                                  now=runner.interpreter.now(), record=record, execution={"id": None, "dry_run": True})
    return decided.started, "" if decided.started else f"not started: {decided.reason}"
