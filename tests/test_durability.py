"""A crash never repeats a side effect silently.

Faults are injected at our own seams (the Effects object, the engine's Lifecycle writer) by raising a
``Crash`` — a BaseException, as a kill is not an error any ``except`` handles — at each point between
an effect and its checkpoint; then the dead worker's lease runs out and another engine resumes. Internal
effects (records) must exist exactly once; external ones (mail, HTTP) may repeat, but only as a second
attempt with the same idempotency key, logged in the step's trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from enginekit import Kit, kit
from servers import HttpServer, http_server
from sqlalchemy import Connection

from controller.engine.effects import Effects, HttpCall
from controller.engine.lifecycle import Lifecycle
from controller.engine.queue import ExecutionRow
from controller.engine.runtime import Engine, live_effects, wake_parent
from controller.engine.starting import start_now
from controller.model.entries import DirectoryEntry
from controller.store import records as record_store

WF = "workflows.d/acme/{}.yaml"


class Crash(BaseException):
    """The process dies here (not an Exception: nothing in the engine may handle it)."""


def wf(name: str, actions: str) -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n"
            f"  trigger: {{type: manual, entities: [ticket]}}\n  actions:\n{actions}")


@dataclass
class Faults:
    """Where the next crash happens: ``after:<effect>`` (the effect is done, nothing written yet) or
    ``checkpoint`` (the step's row is written, the transaction not yet committed)."""

    at: str | None = None

    def hit(self, point: str) -> None:
        if self.at == point:
            self.at = None
            raise Crash(point)


@dataclass
class CrashingEffects:
    inner: Effects
    faults: Faults

    def send_email(self, account: str, mailbox: DirectoryEntry, message: Any) -> dict[str, Any]:
        done = self.inner.send_email(account, mailbox, message)
        self.faults.hit("after:email")
        return done

    def post_channel(self, account: str, channel: DirectoryEntry, payload: dict[str, Any],
                     headers: dict[str, str] | None = None) -> dict[str, Any]:
        done = self.inner.post_channel(account, channel, payload, headers)
        self.faults.hit("after:channel")
        return done

    def http_request(self, call: HttpCall) -> dict[str, Any]:
        done = self.inner.http_request(call)
        self.faults.hit("after:http")
        return done

    def create_record(self, account: str, entity: str, data: dict[str, Any]) -> dict[str, Any]:
        done = self.inner.create_record(account, entity, data)  # type: ignore[attr-defined]
        self.faults.hit("after:record")
        return done  # type: ignore[no-any-return]

    def update_record(self, account: str, entity: str, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        done = self.inner.update_record(account, entity, record_id, data)  # type: ignore[attr-defined]
        self.faults.hit("after:record")
        return done  # type: ignore[no-any-return]


class CrashingLifecycle(Lifecycle):
    """Writes the row, then dies before the transaction commits, when told to."""

    def __init__(self, faults: Faults) -> None:
        super().__init__([wake_parent])
        self.faults = faults

    def save(self, conn: Connection, ex: ExecutionRow, now: Any, *, release: bool) -> None:
        super().save(conn, ex, now, release=release)
        if any(s.status == "succeeded" and s.type.startswith("record.") for s in ex.steps.values()):
            self.faults.hit("checkpoint")


@dataclass
class World:
    k: Kit
    web: HttpServer
    faults: Faults

    def crash_then_resume(self, key: str, at: str) -> int:
        """Run ``key`` until the crash at ``at``, let the lease run out, resume on a healthy engine."""
        self.faults.at = at
        execution = start_now(self.k.engine, key)
        with pytest.raises(Crash):
            self.k.engine.run_until_idle()
        assert self.faults.at is None, f"the run never reached {at}"
        self.k.clock.advance(seconds=self.k.engine.lease.total_seconds() + 1)
        healthy = Engine(self.k.store, data_dir=self.k.data_dir, clock=self.k.clock, config=self.k.engine.config)
        healthy.run_until_idle()
        return execution

    def records(self, type_: str) -> list[dict[str, Any]]:
        with self.k.store.read() as conn:
            return record_store.list_records(conn, "acme", type_)

    def outbox(self) -> list[Path]:
        return sorted((self.k.data_dir / "outbox" / "acme" / "mb_support").glob("*.eml"))


@pytest.fixture
def world(tmp_path: Path, store_url: str) -> Iterator[World]:
    faults = Faults()
    with http_server() as web:
        def effects(engine: Engine, ex: ExecutionRow) -> Effects:
            return CrashingEffects(live_effects(engine, ex), faults)

        with kit(tmp_path, store_url, effects=effects) as k:
            k.engine.lifecycle = CrashingLifecycle(faults)
            k.directory()
            k.deploy({WF.format("task"): wf("task", "    - {id: make, type: record.create, entity: task, "
                                                   "set: {title: follow up}}\n"
                                                   "    - {id: note, type: set, vars: {task: '{{ steps.make.output.id }}'}}\n"),
                      WF.format("touch"): wf("touch", "    - {id: flag, type: record.update, entity: ticket, "
                                                      "record_id: '{{ trigger.record.id }}', set: {seen: true}}\n"),
                      WF.format("both"): wf("both", "    - {id: make, type: record.create, entity: task, "
                                                   "set: {title: t}}\n    - {id: tell, type: email.send, "
                                                   "mailbox: 'mailbox:mb_support', to: a@customer.test, subject: Hi, "
                                                   "body: Hello}\n"),
                      WF.format("mail"): wf("mail", "    - {id: tell, type: email.send, mailbox: 'mailbox:mb_support', "
                                                   "to: a@customer.test, subject: Hi, body: Hello}\n"),
                      WF.format("call"): wf("call", f"    - {{id: crm, type: http.request, method: POST, "
                                                   f"url: '{web.url}/crm', json: {{n: 1}}}}\n"
                                                   f"    - {{id: look, type: http.request, url: '{web.url}/look'}}\n")})
            yield World(k, web, faults)


@pytest.mark.parametrize("at", ["after:record", "checkpoint"])
def test_a_record_created_by_a_step_exists_once_whatever_the_moment_of_the_crash(world: World, at: str) -> None:
    """Killed after the write or after the step row, before the commit: both are lost, and redone once."""
    execution = world.crash_then_resume("acme/task", at)
    assert world.k.show(execution)["status"] == "succeeded"
    tasks = world.records("task")
    assert len(tasks) == 1
    make = world.k.steps(execution)["make"]
    assert make["status"] == "succeeded" and make["output"]["id"] == tasks[0]["id"]
    assert make["attempts"] == 1 and make["attempt_log"] == []  # the lost attempt left nothing to repeat


def test_a_crash_after_the_records_commit_does_not_redo_it(world: World) -> None:
    """Killed at the next step (a mail) after the record's unit committed: the record is not made again."""
    execution = world.crash_then_resume("acme/both", "after:email")
    assert len(world.records("task")) == 1
    steps = world.k.steps(execution)
    assert steps["make"]["attempts"] == 1 and steps["tell"]["attempts"] == 2
    assert world.k.show(execution)["status"] == "succeeded" and len(world.outbox()) == 1


def test_a_record_update_is_in_the_steps_transaction_too(world: World) -> None:
    """record.update killed before its commit leaves the record as it was until the resumed run sets it."""
    from controller.engine.records import RecordService

    ticket = RecordService(world.k.engine).create("acme", "ticket", {"title": "t"})
    world.faults.at = "after:record"
    execution = start_now(world.k.engine, "acme/touch", record=("ticket", ticket["id"]))
    with pytest.raises(Crash):
        world.k.engine.run_until_idle()
    assert "seen" not in world.records("ticket")[0]  # rolled back with its step
    world.k.clock.advance(seconds=61)
    Engine(world.k.store, data_dir=world.k.data_dir, clock=world.k.clock, config=world.k.engine.config).run_until_idle()
    assert world.records("ticket")[0]["seen"] is True
    assert world.k.steps(execution)["flag"]["attempts"] == 1


def test_a_mail_repeated_after_a_crash_is_one_outbox_file_and_a_visible_second_attempt(world: World) -> None:
    """The outbox writes one file per Message-ID, and the Message-ID is the step's key: a repeat replaces."""
    execution = world.crash_then_resume("acme/mail", "after:email")
    files = world.outbox()
    assert len(files) == 1
    tell = world.k.steps(execution)["tell"]
    assert tell["status"] == "succeeded" and tell["attempts"] == 2
    assert [(e["attempt"], e["outcome"]) for e in tell["attempt_log"]] == [(1, "worker lost during attempt 1")]
    message = BytesParser(policy=policy.default).parsebytes(files[0].read_bytes())
    assert message["Message-ID"] == f"<{tell['idempotency_key']}@acme.test>" == tell["output"]["message_id"]


def test_an_http_call_repeated_after_a_crash_sends_the_same_idempotency_key(world: World) -> None:
    """The listener sees the POST twice with one Idempotency-Key; the trace says attempt 2 and why; GET has none."""
    execution = world.crash_then_resume("acme/call", "after:http")
    posts = [r for r in world.web.requests if r.path == "/crm"]
    assert len(posts) == 2
    keys = {r.headers.get("Idempotency-Key") for r in posts}
    crm = world.k.steps(execution)["crm"]
    assert keys == {crm["idempotency_key"]} and crm["idempotency_key"].startswith("wfc-")
    assert crm["attempts"] == 2 and crm["attempt_log"][0]["outcome"] == "worker lost during attempt 1"
    looks = [r for r in world.web.requests if r.path == "/look"]
    assert len(looks) == 1 and "Idempotency-Key" not in looks[0].headers


def test_keys_differ_per_step_and_the_header_name_is_configurable(tmp_path: Path, store_url: str) -> None:
    """Two executions' calls carry two keys; `effects.idempotency_header` renames the header, "" drops it."""
    with http_server() as web, kit(tmp_path, store_url) as k:
        k.deploy({WF.format("call"): wf("call", f"    - {{id: crm, type: http.request, method: PUT, "
                                                f"url: '{web.url}/crm'}}\n")})
        k.run("acme/call")
        k.run("acme/call")
        for header in ("X-Request-Key", ""):
            engine = Engine(k.store, data_dir=k.data_dir, clock=k.clock,
                            config=replace(k.engine.config, idempotency_header=header))
            start_now(engine, "acme/call")
            engine.run_until_idle()
    sent = [r.headers for r in web.requests]
    assert len({h["Idempotency-Key"] for h in sent[:2]}) == 2
    assert "X-Request-Key" in sent[2] and "Idempotency-Key" not in sent[2]
    assert not any(name in sent[3] for name in ("X-Request-Key", "Idempotency-Key"))
