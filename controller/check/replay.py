"""The impact preview: a workflow's recent real events replayed through the applied and the proposed version.

Runs on the controller (``POST /api/v1/workflows/<a>/<n>/replay``), where the events are: raw records and
payloads never leave it. For each event (:func:`controller.store.decisions.recent_events`: the inputs of
started executions and of triggers the ``when`` filtered) both versions are dry-run
(:mod:`controller.engine.dryrun`, zero side effects) at the event's own time, each run is reduced to an
:class:`Outcome` (started or not, the steps run, branches, each intended effect's fields, the failure), and
:func:`compare` lists the :class:`Difference` s. :func:`summarise` groups them into what a reviewer reads in
ten seconds: totals, one sentence per group, two or three example events each.

Each version decides as the live controller would: the listeners' matching
(:func:`controller.engine.triggers.listens`), ``spec.enabled``, then the ``when`` through admission's own function
(:func:`controller.engine.scope.trigger_when`), at the event's own time. The steps see the record as the event carried it (the trigger's snapshot), not as it is now:
the stored record already holds what the applied version's steps wrote. A ``record.update`` step's output is the
stored record with the step's fields, as in a real run.

Privacy: without ``values`` (the ``workflow.replay`` permission) the report names differences by field path
and counts them; no record value, payload, address, error text or record id is in it. That keeps values out of
the report, not out of reach: a token with ``workflow.read`` reads executions over the API anyway, and a proposed
file is code, so one written to probe a value can learn it from the counts.

Flow: store (events, their records, applied version) -> this module (pure from here on: outcomes, differences, report)
-> the API answers the report -> ``wfctl check --replay`` renders it (:mod:`controller.check.report`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from controller.config import Config
from controller.engine import scope as scopes
from controller.engine.admission import FILTERED_KINDS, read_target
from controller.engine.directory import Directory
from controller.engine.dryrun import DryRunner, DryRunResult
from controller.engine.templating import Templates
from controller.engine.triggers import listens
from controller.errors import DefinitionError, NotFoundError, UsageError
from controller.model.durations import parse_duration
from controller.model.entries import DirectoryEntry
from controller.reconcile.loader import WorkflowPath, load
from controller.store import Store, views
from controller.store import records as record_store
from controller.store.decisions import Event, recent_events

EXAMPLES = 3  # example events per group of differences
DEFAULT_LIMIT = 200  # events replayed per workflow when the request names no number
VERBS = {"email.send": "send an e-mail", "http.request": "make an HTTP request", "channel.post": "post to a channel",
         "record.create": "create a record", "record.update": "update a record", "wait": "wait",
         "workflow.call": "call a workflow"}
FIELD_NAMES = {"to": "recipient (to)", "cc": "copy (cc)", "bcc": "blind copy (bcc)", "from": "sender (from)",
               "url": "URL", "json": "JSON body", "entity": "record type", "record_id": "record",
               "seconds": "duration"}


@dataclass(frozen=True)
class Outcome:
    """What one version would make of one event, reduced to what can differ for a customer."""

    started: bool
    reason: str = ""  # why it would not start
    failed: bool = False
    error: str | None = None
    failed_step: str | None = None
    steps: frozenset[str] = frozenset()  # action ids of the workflow's own steps that would run
    branches: Mapping[str, str] = field(default_factory=dict)
    effects: Mapping[str, Effect] = field(default_factory=dict)  # by action id ("<call step>><workflow>:<id>" below)


@dataclass(frozen=True)
class Effect:
    """One intended side effect: its kind and its fields by dotted path (record fields set: ``set.status``)."""

    kind: str
    fields: Mapping[str, Any]


NOT_STARTED = Outcome(False, "no applied version")


def outcome_of(started: bool, reason: str, result: DryRunResult | None) -> Outcome:
    """The :class:`Outcome` of one dry run (``result`` is None when the ``when`` kept it from starting)."""
    if not started or result is None:
        return Outcome(False, reason)
    steps = result.steps  # its own; a called workflow's effects are among the intents
    failed_step = next((s["action_id"] for s in reversed(steps) if s["status"] == "failed"), None)
    effects = {}
    for intent in result.intents:
        own = intent.workflow == result.workflow and not intent.via
        where = intent.action_id if own else f"{intent.via}{intent.workflow}:{intent.action_id}"
        fields = {name: value for name, value in intent.fields.items() if name != "set"}
        fields.update({f"set.{name}": value for name, value in (intent.fields.get("set") or {}).items()})
        effects[where] = Effect(intent.kind, fields)
    return Outcome(True, failed=not result.ok, error=result.error, failed_step=failed_step,
                   steps=frozenset(s["action_id"] for s in steps),
                   branches={s["action_id"]: str(s.get("branch")) for s in steps if s["type"] == "if"},
                   effects=effects)


@dataclass(frozen=True)
class Difference:
    """One way the proposed version treats an event differently from the applied one."""

    kind: str  # start stop fail recover error runs skips branch added removed changed
    where: str  # the action id, or "<action id>.<field>" for a changed effect field; "" for start/stop
    before: Any = None
    after: Any = None
    verb: str = ""  # what the step does, for an effect: "send an e-mail"


def compare(before: Outcome, after: Outcome) -> list[Difference]:
    """Every difference between the applied version's outcome and the proposed one's, in a stable order."""
    found: list[Difference] = []
    if before.started != after.started:
        found.append(Difference("start" if after.started else "stop", "", before.reason, after.reason))
    if after.failed and not before.failed:
        found.append(Difference("fail", after.failed_step or "", None, after.error))
    elif before.failed and not after.failed and after.started:  # one that no longer starts is a "stop"
        found.append(Difference("recover", before.failed_step or "", before.error, None))
    elif before.failed and after.failed and (before.error, before.failed_step) != (after.error, after.failed_step):
        found.append(Difference("error", after.failed_step or "", before.error, after.error))
    effectful = set(before.effects) | set(after.effects)
    if before.started == after.started:  # else which steps run is the start itself; its effects still count
        for step in sorted((before.steps ^ after.steps) - effectful):
            found.append(Difference("runs" if step in after.steps else "skips", step))
    for step in sorted(set(before.branches) & set(after.branches)):
        if before.branches[step] != after.branches[step]:
            found.append(Difference("branch", step, before.branches[step], after.branches[step]))
    for step in sorted(effectful):
        old, new = before.effects.get(step), after.effects.get(step)
        verb = VERBS.get((new or old).kind, "have an effect")  # type: ignore[union-attr]
        if old is None or new is None:
            found.append(Difference("added" if old is None else "removed", step, old and old.fields,
                                    new and new.fields, verb))
        elif old.kind != new.kind:
            found.append(Difference("changed", f"{step}.kind", old.kind, new.kind, verb))
        else:
            found += [Difference("changed", f"{step}.{name}", old.fields.get(name), new.fields.get(name), verb)
                      for name in sorted(set(old.fields) | set(new.fields))
                      if old.fields.get(name) != new.fields.get(name)]
    return found


WHEN = "the trigger's when"  # where a version fails that cannot evaluate its when
REGRESSION = "fail"
"""The one kind that fails the check: the proposed version fails on an event the applied one handled."""
FIRST = {REGRESSION: 0, "start": 1, "stop": 1}  # groups of these kinds lead the report; the rest by count


def sentence(kind: str, where: str, verb: str) -> str:
    """What a group of differences means, in words ("would now also send an e-mail (step notify)")."""
    step = f"step {where}" if where else ""
    if kind == "changed":
        action, _, name = where.partition(".")
        named = f"value of {name[4:]}" if name.startswith("set.") else FIELD_NAMES.get(name, name)
        return f"would {verb} with a different {named} (step {action})"
    return {
        "start": "would now start", "stop": "would no longer start",
        "fail": f"would fail at {step or WHEN}", "recover": f"would no longer fail at {step or WHEN}",
        "error": f"would fail differently at {step or WHEN}",
        "runs": f"would now run {step}", "skips": f"would no longer run {step}",
        "branch": f"would take another branch at {step}",
        "added": f"would now also {verb} ({step})", "removed": f"would no longer {verb} ({step})",
    }[kind]


@dataclass
class _Group:
    kind: str
    where: str
    verb: str
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def summarise(key: str, noun: str, pairs: Iterable[tuple[Event, Outcome, Outcome]], *, values: bool,
              events: int, truncated: bool = False) -> dict[str, Any]:
    """The report of one workflow's replay: totals, a headline, groups of differences with examples.

    ``values``: example events carry record references, values before and after and error texts; without,
    only field paths, counts and where the controller keeps each example (``execution 12``).
    """
    groups: dict[tuple[str, str], _Group] = {}
    totals = Counter[str]()
    for event, before, after in pairs:
        totals["replayed"] += 1
        totals["applied_starts"] += before.started
        totals["proposed_starts"] += after.started
        differences = compare(before, after)
        totals["changed" if differences else "unchanged"] += 1
        for kind in {d.kind for d in differences}:
            totals[kind] += 1
        for difference in differences:
            group = groups.setdefault((difference.kind, difference.where),
                                      _Group(difference.kind, difference.where, difference.verb))
            group.count += 1
            if values and difference.kind in ("fail", "error") and difference.after:
                group.errors[str(difference.after)] += 1
            if len(group.examples) < EXAMPLES:
                group.examples.append(_example(event, difference, values))
    ordered = sorted(groups.values(), key=lambda g: (FIRST.get(g.kind, len(FIRST)), -g.count, g.kind, g.where))
    view_groups = []
    for group in ordered:
        text = sentence(group.kind, group.where, group.verb)
        if group.errors:
            error = group.errors.most_common(1)[0][0]
            text += f": {error.removeprefix(f'step {group.where}: ')}"
        view_groups.append({"kind": group.kind, "where": group.where, "count": group.count, "summary": text,
                            "examples": group.examples})
    replayed = totals["replayed"]
    headline = f"of {replayed} recent {noun}: " + (
        ", ".join(f"{g['count']} {g['summary']}" for g in view_groups[:4]) + (", ..." if len(view_groups) > 4 else "")
        if view_groups else "no observable change")
    return {"workflow": key, "events": events, "replayed": replayed, "truncated": truncated, "values": values,
            "headline": headline,
            "totals": {"changed": totals["changed"], "unchanged": totals["unchanged"],
                       "applied_starts": totals["applied_starts"], "proposed_starts": totals["proposed_starts"],
                       "would_start": totals["start"], "would_stop": totals["stop"],
                       "newly_failing": totals[REGRESSION], "no_longer_failing": totals["recover"]},
            "groups": view_groups}


def _example(event: Event, difference: Difference, values: bool) -> dict[str, Any]:
    example: dict[str, Any] = {"event": event.ref, "at": event.at.isoformat()}
    if values:
        if event.record_ref:
            example["record"] = f"{event.record_ref.get('type')}:{event.record_ref.get('id')}"
        if difference.kind in ("start", "stop"):  # why the version that does not start it does not
            example["reason"] = difference.before if difference.kind == "start" else difference.after
        elif difference.before is not None or difference.after is not None:
            example["before"], example["after"] = difference.before, difference.after
    return example


def noun_of(trigger: Mapping[str, Any]) -> str:
    """What the events of a trigger are called in a headline ("ticket events", "deliveries")."""
    kind = trigger.get("type")
    if kind in ("record", "inactivity"):
        return f"{trigger.get('entity')} events"
    return {"webhook": "deliveries", "email": "e-mails", "schedule": "fires", "manual": "runs",
            "call": "calls"}.get(str(kind), "events")


# -- on the controller: read the events and the applied version, dry-run both ---------------------------------


@dataclass(frozen=True)
class Request:
    """What ``wfctl check --replay`` asks for one workflow."""

    key: str
    source: str  # the proposed file's text
    path: str = ""  # where the file sits in the repository (for located problems)
    limit: int = DEFAULT_LIMIT
    since: str | None = None  # a duration: only events this recent
    like: str | None = None  # ACCOUNT/NAME whose events to replay (a new workflow has none)
    values: bool = False  # the caller holds workflow.replay
    calls: Mapping[str, str] = field(default_factory=dict)  # name -> proposed text of other workflows of the
    # account the pull request changes: a workflow.call of one runs its proposed version too


MAX_CALLS = 100  # proposed workflows besides the replayed one a request may carry


def replay(store: Store, config: Config, request: Request, *, directory: Directory, now: Callable[[], datetime],
           read_record: Callable[..., Any] | None = None, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Replay ``request``'s events through the applied and the proposed version; the report (see ``summarise``).

    UsageError for a request out of bounds, DefinitionError (located problems) for a proposed file that is
    not a valid workflow, NotFoundError for a ``like`` workflow that is not there. Reads only.
    """
    replayed = outcomes(store, config, request, directory=directory, now=now, read_record=read_record, clock=clock)
    return summarise(request.key, noun_of(replayed.trigger), replayed.pairs, values=request.values,
                     events=replayed.events, truncated=len(replayed.pairs) < replayed.events)


@dataclass
class Replayed:
    """The outcomes of a replay, before they are compared: one pair per event replayed within the budget."""

    events: int  # how many events were found
    trigger: Mapping[str, Any]  # the applied version's trigger (the proposed one's for a new workflow)
    pairs: list[tuple[Event, Outcome, Outcome]] = field(default_factory=list)


def outcomes(store: Store, config: Config, request: Request, *, directory: Directory, now: Callable[[], datetime],
             read_record: Callable[..., Any] | None = None, clock: Callable[[], float] = time.monotonic) -> Replayed:
    """Each of ``request``'s events through both versions (see :func:`replay`); an event the time budget cuts
    short is left out, and so are those after it."""
    account, name = request.key.split("/", 1)
    if not 1 <= request.limit <= config.replay_max_events:
        raise UsageError(f"replay asks for {request.limit} events; ask for 1 to {config.replay_max_events} "
                         f"(configuration replay.max_events)")
    proposed = load(WorkflowPath(request.path or f"{account}/{name}.yaml", account, name), request.source.encode())
    if not proposed.ok:
        raise DefinitionError(list(proposed.problems))
    if len(request.calls) > MAX_CALLS:
        raise UsageError(f"replay carries {len(request.calls)} other proposed workflows; at most {MAX_CALLS}")
    changed: dict[str, Mapping[str, Any]] = {}
    for other, text in request.calls.items():
        loaded = load(WorkflowPath(f"{account}/{other}.yaml", account, other), text.encode())
        if not loaded.ok:
            raise DefinitionError(list(loaded.problems))
        changed[other] = loaded.content
    try:
        since = now() - timedelta(seconds=parse_duration(request.since)) if request.since else None
    except (ValueError, OverflowError) as e:
        raise UsageError(f"since {request.since!r}: {e}") from None
    source_key = request.like or request.key
    if request.like is not None and request.like.split("/", 1)[0] != account:
        raise UsageError(f"--replay-like {request.like}: the events must come from a workflow of account {account}")
    with store.read() as conn:
        applied = views.current_definition(conn, request.key)
        target = read_target(conn, request.key) if applied is not None else None
        version = target.version if target is not None else 0
        try:
            source_id: int | None = views.workflow_id(conn, source_key)
        except NotFoundError:
            if request.like is not None:
                raise NotFoundError(f"no workflow {request.like!r} to take events from; see GET /api/v1/workflows",
                                    workflow=request.like) from None
            source_id = None  # a new workflow: no events of its own
        if request.like is not None:
            _same_trigger(request.like, views.current_definition(conn, request.like), proposed.content)
        events = recent_events(conn, source_id, limit=request.limit, since=since) if source_id is not None else []
        known = _event_records(conn, account, events) if read_record is not None else {}

    def stored(called: str) -> Mapping[str, Any] | None:
        with store.read() as conn:
            return views.current_definition(conn, f"{account}/{called}")

    # Both versions of every event look up the same entries, called workflows and records: each is read from
    # the store once per replay (one consistent picture, and no store round trip per event and version).
    instant, templates, definitions = [now()], Templates(), _once(stored)
    entries = _Remembered(directory)
    records = _once(read_record, known) if read_record is not None else None

    def runner(own: Mapping[str, Any] | None, others: Mapping[str, Mapping[str, Any]]) -> DryRunner:
        """A runner whose calls run ``own`` for the workflow itself (the version under replay), ``others`` for
        the workflows named there, and the applied version of any other."""
        return DryRunner(account=account, directory=entries, now=lambda: instant[0], templates=templates,
                         definitions=lambda called: own if called == name else others.get(called) or definitions(called),
                         read_record=records, outbound=config.outbound(account))

    old, new = runner(applied, {}), runner(proposed.content, changed)
    budget, started_at = config.replay_budget_seconds, clock()

    def spent() -> bool:
        return clock() - started_at > budget

    found = Replayed(len(events), (applied or proposed.content)["spec"]["trigger"])
    for event in events:
        instant[0] = event.at  # the event's own time: templates on `now` see what they saw then
        before = _outcome(old, name, applied, version, event, spent) if applied is not None else NOT_STARTED
        after = _outcome(new, name, proposed.content, version + 1, event, spent)
        if spent():  # cut short (or about to be): not replayed
            break
        found.pairs.append((event, before, after))
    return found


class _Remembered:
    """A directory that asks the real one once per reference (for the length of one replay)."""

    def __init__(self, real: Directory):
        self.get: Callable[[str, str], DirectoryEntry | None] = _once(real.get)


def _once(read: Callable[..., Any], known: Mapping[tuple[Any, ...], Any] | None = None) -> Callable[..., Any]:
    """``read`` asked once per set of arguments (``known``: answers already read); a copy of a remembered
    mapping each time (callers may add to it)."""
    found: dict[tuple[Any, ...], Any] = dict(known or {})

    def remembered(*args: Any) -> Any:
        if args not in found:
            found[args] = read(*args)
        value = found[args]
        return dict(value) if isinstance(value, dict) else value

    return remembered


def _event_records(conn: Connection, account: str, events: Iterable[Event]) -> dict[tuple[str, str, str], Any]:
    """The built-in store's records the events are about, one query per type, keyed as the record reader is
    asked (account, type, id): what a ``record.update`` of either version reads back, without a read per event."""
    by_type: dict[str, set[str]] = {}
    for event in events:
        ref = event.record_ref or {}
        if ref.get("type") and ref.get("id") is not None:
            by_type.setdefault(str(ref["type"]), set()).add(str(ref["id"]))
    known: dict[tuple[str, str, str], Any] = {}
    for kind, ids in by_type.items():
        try:
            found = record_store.get_many(conn, account, kind, ids)
        except UsageError:  # not a type of the built-in store: the reader is asked record by record
            continue
        known.update({(account, kind, record_id): view for record_id, view in found.items()})
    return known


def _same_trigger(like: str, theirs: Mapping[str, Any] | None, mine: Mapping[str, Any]) -> None:
    """UsageError unless ``like``'s events are of the kind the proposed workflow is triggered by."""
    a, b = (theirs or {}).get("spec", {}).get("trigger", {}), mine["spec"]["trigger"]
    if (a.get("type"), a.get("entity")) != (b.get("type"), b.get("entity")):
        raise UsageError(f"--replay-like {like}: its trigger ({a.get('type')} {a.get('entity') or ''}) is not the "
                         f"proposed workflow's ({b.get('type')} {b.get('entity') or ''}); name a workflow with the "
                         f"same trigger entity".replace(" )", ")"))


def _outcome(runner: DryRunner, name: str, definition: Mapping[str, Any], version: int, event: Event,
             stop: Callable[[], bool]) -> Outcome:
    """One version's outcome on one event, decided as the live controller decides: does its trigger take the
    event, is it enabled, its ``when`` (admission's own function), then the dry run."""
    key = f"{runner.account}/{name}"
    spec = definition["spec"]
    trigger = event.trigger
    if not listens(spec["trigger"], trigger):
        return Outcome(False, f"its trigger ({_trigger_text(spec['trigger'])}) does not take this "
                              f"{trigger.get('type')} event")
    if not spec.get("enabled", True):
        return Outcome(False, "disabled (spec.enabled: false)")
    if trigger.get("type") in FILTERED_KINDS:
        decided = scopes.trigger_when(runner.interpreter.templates, spec["trigger"], workflow=key, version=version,
                                        trigger=trigger, now=event.at)
        if decided.broken:  # the controller would not start it, and would say why: a failure of the version
            return Outcome(False, decided.reason, failed=True, error=decided.reason)
        if not decided.started:
            return Outcome(False, f"not started: {decided.reason}")
    return outcome_of(True, "", runner.run(name, definition, trigger=trigger, record=trigger.get("record"),
                                           stop=stop))


def _trigger_text(spec: Mapping[str, Any]) -> str:
    """A trigger in a few words: ``record ticket created, updated``."""
    parts = [spec.get("type"), spec.get("entity"), ", ".join(spec.get("events") or []) or None, spec.get("mailbox")]
    return " ".join(str(p) for p in parts if p)
