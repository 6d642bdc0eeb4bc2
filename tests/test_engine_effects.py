"""The engine with its live effects: real SMTP and HTTP servers on 127.0.0.1, triggers, schedules, fake time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from enginekit import Kit, kit
from servers import HttpServer, Response, http_server, smtp_server
from sqlalchemy import select

from controller.engine.records import RecordService
from controller.engine.runtime import Engine
from controller.engine.scheduler import Schedules
from controller.engine.starting import start_now
from controller.engine.triggers import email, inactivity
from controller.errors import UsageError
from controller.store import open_store
from controller.store import records as record_store
from controller.store.tables import executions

WF = "workflows.d/acme/{}.yaml"
SMTP_LOGIN = ("support", "s3cret-pw")
LITERAL = "{{ 7*7 }}"


def wf(name: str, trigger: str, actions: str, *, enabled: bool = True) -> str:
    """A workflow file; ``trigger`` and ``actions`` are YAML flow/block text at their indentation."""
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n"
            f"  enabled: {'true' if enabled else 'false'}\n  trigger: {trigger}\n  actions:\n{actions}")


MANUAL = "{type: manual, entities: [ticket]}"


def directory(web: str = "http://127.0.0.1:9", smtp_port: int = 25) -> str:
    return f"""
users:
  - {{id: u_alice, name: Alice, email: alice@acme.test}}
mailboxes:
  - {{id: mb_support, name: Support, address: support@acme.test, kind: outbox}}
  - id: mb_smtp
    name: Acme Support
    address: support@acme.test
    kind: smtp
    smtp: {{host: 127.0.0.1, port: {smtp_port}, starttls: false, username: support, password_env: WFC_TEST_SMTP_PW}}
channels:
  - {{id: C1, name: oncall, webhook_url: "{web}/services/T1/B1/secret"}}
"""


def answer_in_turn(web: HttpServer, path: str, *statuses: int) -> None:
    """Answer the n-th request to ``path`` with ``statuses[n]`` (the last status from then on)."""
    plain = web.answer

    def answer(request_path: str) -> Response:
        if request_path.split("?", 1)[0] != path:
            return plain(request_path)
        n = len(sent(web, path))
        status = statuses[min(n, len(statuses)) - 1]
        return Response(status, json.dumps({"attempt": n}).encode())

    web.answer = answer  # type: ignore[method-assign,assignment]


def sent(web: HttpServer, path: str) -> list[Any]:
    with web.lock:
        return [r for r in web.requests if r.path.split("?", 1)[0] == path]


def executions_of(k: Kit, key: str) -> list[dict[str, Any]]:
    with k.store.read() as conn:
        rows = conn.execute(select(executions.c.id, executions.c.depth).where(executions.c.workflow_key == key)
                            .order_by(executions.c.id)).all()
    return [{**k.show(row.id), "depth": row.depth} for row in rows]


@pytest.fixture
def web() -> Iterator[HttpServer]:
    with http_server() as server:
        yield server


@pytest.fixture
def k(tmp_path: Path, store_url: str, web: HttpServer) -> Iterator[Kit]:
    with kit(tmp_path, store_url) as made:
        made.directory(directory(web.url))
        yield made


# -- e-mail through a real SMTP server ---------------------------------------------------------------


def test_email_goes_through_smtp_and_record_text_stays_literal(tmp_path: Path, sqlite_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """email.send logs in with the password from the environment; a record's ``{{ 7*7 }}`` arrives as written."""
    monkeypatch.setenv("WFC_TEST_SMTP_PW", SMTP_LOGIN[1])
    actions = """\
    - id: mail
      type: email.send
      mailbox: mailbox:mb_smtp
      to: "{{ record.requester }}"
      cc: user:u_alice
      subject: "Ticket {{ record.id }}: {{ record.title }}"
      body: "{{ record.description }}"
"""
    with smtp_server(auth=SMTP_LOGIN) as smtp, kit(tmp_path, sqlite_url) as k:
        k.directory(directory(smtp_port=smtp.port))
        k.deploy({WF.format("mailer"): wf("mailer", MANUAL, actions)})
        ticket = RecordService(k.engine).create("acme", "ticket", {
            "title": f"Total {LITERAL}", "description": f"Please compute {LITERAL} for me",
            "requester": "bob@customer.test"})
        execution_id = start_now(k.engine, "acme/mailer", record=("ticket", ticket["id"]))
        k.engine.run_until_idle()
        assert k.show(execution_id)["status"] == "succeeded", k.show(execution_id)["error"]
        [mail] = smtp.messages
    assert mail.login == "support"
    assert sorted(mail.rcpt_tos) == ["alice@acme.test", "bob@customer.test"]
    assert mail.message["Subject"] == f"Ticket {ticket['id']}: Total {LITERAL}"
    assert mail.message.get_content().strip() == f"Please compute {LITERAL} for me"
    assert mail.message["Auto-Submitted"] == "auto-generated" and mail.message["X-Wfctl-Workflow"] == "acme/mailer"
    step = k.steps(execution_id)["mail"]
    assert step["input"]["subject"] == f"Ticket {ticket['id']}: Total {LITERAL}"
    assert step["output"]["subject"] == mail.message["Subject"]


def test_smtp_without_its_password_variable_fails_the_step(tmp_path: Path, sqlite_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A mailbox whose password variable is not set fails the step naming the variable, and sends nothing."""
    monkeypatch.delenv("WFC_TEST_SMTP_PW", raising=False)
    actions = "    - {id: mail, type: email.send, mailbox: 'mailbox:mb_smtp', to: a@b.test, subject: s, body: b}\n"
    with smtp_server(auth=SMTP_LOGIN) as smtp, kit(tmp_path, sqlite_url) as k:
        k.directory(directory(smtp_port=smtp.port))
        k.deploy({WF.format("mailer"): wf("mailer", MANUAL, actions)})
        execution = k.show(k.run("acme/mailer"))
        assert smtp.messages == []
    assert execution["status"] == "failed"
    assert "step mail" in execution["error"] and "WFC_TEST_SMTP_PW" in execution["error"]


# -- HTTP: channel.post and http.request against a real server ---------------------------------------


def test_http_request_and_channel_post_reach_the_server(k: Kit, web: HttpServer) -> None:
    """http.request sends the resolved URL and body and gets status/json back; channel.post posts {text}."""
    web.respond("/api/tickets", status=201, json_body={"ticket": {"id": 99}})
    actions = f"""\
    - id: call
      type: http.request
      method: POST
      url: "{web.url}/api/tickets?from={{{{ record.id }}}}"
      headers: {{X-Title: "{{{{ record.title }}}}"}}
      json: {{title: "{{{{ record.title }}}}", answer: "{{{{ 6 * 7 }}}}", tags: "{{{{ record.tags }}}}"}}
      expect_status: [201]
    - id: tell
      type: channel.post
      channel: channel:C1
      text: "created {{{{ steps.call.output.json.ticket.id }}}} for {{{{ record.title }}}}"
"""
    k.deploy({WF.format("caller"): wf("caller", MANUAL, actions)})
    ticket = RecordService(k.engine).create("acme", "ticket", {"title": LITERAL, "tags": ["a", "b"]})
    execution_id = start_now(k.engine, "acme/caller", record=("ticket", ticket["id"]))
    k.engine.run_until_idle()
    execution = k.show(execution_id)
    assert execution["status"] == "succeeded", execution["error"]
    call = k.steps(execution_id)["call"]
    assert call["input"]["url"] == f"{web.url}/api/tickets?from={ticket['id']}"
    assert call["input"]["json"] == {"title": LITERAL, "answer": 42, "tags": ["a", "b"]}
    assert call["output"]["status"] == 201 and call["output"]["json"] == {"ticket": {"id": 99}}
    [request] = sent(web, "/api/tickets")
    assert request.method == "POST" and request.path == f"/api/tickets?from={ticket['id']}"
    assert request.json == {"title": LITERAL, "answer": 42, "tags": ["a", "b"]}
    assert request.headers["X-Title"] == LITERAL
    [post] = sent(web, "/services/T1/B1/secret")
    assert post.json == {"text": f"created 99 for {LITERAL}"}
    assert k.steps(execution_id)["tell"]["output"] == {"status": 200}


def test_retry_backs_off_exponentially_under_fake_time(k: Kit, web: HttpServer) -> None:
    """503, 503, 200 with retry {attempts: 3, backoff: 30s}: attempts at 0 s, 30 s and 90 s, then success."""
    answer_in_turn(web, "/flaky", 503, 503, 200)
    actions = f"    - {{id: call, type: http.request, url: '{web.url}/flaky', retry: {{attempts: 3, backoff: 30s}}}}\n"
    k.deploy({WF.format("flaky"): wf("flaky", MANUAL, actions)})
    execution_id = k.run("acme/flaky")
    execution = k.show(execution_id)
    assert execution["status"] == "waiting" and len(sent(web, "/flaky")) == 1
    step = execution["steps"][0]
    assert (step["status"], step["attempts"]) == ("waiting", 1) and "answered 503" in step["error"]
    for seconds, calls in ((29, 1), (1, 2), (59, 2), (1, 3)):
        k.clock.advance(seconds=seconds)
        k.engine.run_until_idle()
        assert len(sent(web, "/flaky")) == calls, f"after +{seconds}s"
    execution = k.show(execution_id)
    assert execution["status"] == "succeeded"
    step = execution["steps"][0]
    assert (step["status"], step["attempts"], step["error"]) == ("succeeded", 3, None)
    assert step["output"]["json"] == {"attempt": 3}


def test_retry_gives_up_after_its_attempts(k: Kit, web: HttpServer) -> None:
    """A call that keeps failing fails the execution after the last attempt, saying how many were made."""
    web.respond("/down", status=503, json_body={"error": "down"})
    actions = f"    - {{id: call, type: http.request, url: '{web.url}/down', retry: {{attempts: 2, backoff: 10s}}}}\n"
    k.deploy({WF.format("down"): wf("down", MANUAL, actions)})
    execution_id = k.run("acme/down")
    k.clock.advance(seconds=10)
    k.engine.run_until_idle()
    execution = k.show(execution_id)
    assert execution["status"] == "failed" and execution["steps"][0]["attempts"] == 2
    assert execution["error"].startswith("step call: GET ") and "(after 2 attempts)" in execution["error"]


def test_a_503_without_retry_fails_naming_the_step(k: Kit, web: HttpServer) -> None:
    """Without retry a 503 fails the step and the execution at once, with a message naming the step."""
    web.respond("/down", status=503, text="maintenance")
    actions = f"    - {{id: crm-sync, type: http.request, url: '{web.url}/down'}}\n" \
              "    - {id: after, type: set, vars: {x: 1}}\n"
    k.deploy({WF.format("down"): wf("down", MANUAL, actions)})
    execution = k.show(k.run("acme/down"))
    assert execution["status"] == "failed"
    assert execution["error"].startswith("step crm-sync: ") and "503" in execution["error"]
    assert "maintenance" in execution["error"]
    assert [(s["action_id"], s["status"], s["attempts"]) for s in execution["steps"]] == [("crm-sync", "failed", 1)]


# -- record triggers --------------------------------------------------------------------------------

ON_URGENT = "{type: record, entity: ticket, events: [created, updated], when: \"{{ record.priority == 'urgent' }}\"}"


def test_record_trigger_starts_only_matching_records(k: Kit) -> None:
    """Only records that satisfy ``when`` start executions, on created and on updated, with the event in scope."""
    actions = "    - {id: note, type: set, vars: {event: '{{ trigger.event }}', title: '{{ record.title }}'}}\n"
    k.deploy({WF.format("on-urgent"): wf("on-urgent", ON_URGENT, actions)})
    service = RecordService(k.engine)
    low = service.create("acme", "ticket", {"priority": "low", "title": "printer"})
    urgent = service.create("acme", "ticket", {"priority": "urgent", "title": LITERAL})
    assert len(service.started) == 1
    service.create("globex", "ticket", {"priority": "urgent", "title": "other account"})
    assert len(service.started) == 1
    service.update("acme", "ticket", low["id"], {"priority": "urgent"})
    service.update("acme", "ticket", urgent["id"], {"priority": "low"})
    assert len(service.started) == 2
    k.engine.run_until_idle()
    runs = executions_of(k, "acme/on-urgent")
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert [r["output"] for r in runs] == [{"event": "created", "title": LITERAL},
                                           {"event": "updated", "title": "printer"}]
    assert runs[0]["trigger"]["type"] == "record" and runs[0]["trigger"]["record"]["id"] == urgent["id"]


def test_record_created_by_a_step_fires_triggers_one_level_deeper(k: Kit) -> None:
    """A record.create step fires the record workflows of that entity as executions one level deeper."""
    creator = "    - {id: open, type: record.create, entity: ticket, set: {priority: urgent, title: from a step}}\n"
    listener = "    - {id: seen, type: set, vars: {title: '{{ record.title }}'}}\n"
    k.deploy({WF.format("creator"): wf("creator", MANUAL, creator),
              WF.format("on-urgent"): wf("on-urgent", ON_URGENT, listener)})
    parent = k.show(k.run("acme/creator"))
    assert parent["status"] == "succeeded"
    created = parent["steps"][0]["output"]
    [child] = executions_of(k, "acme/on-urgent")
    assert (child["status"], child["depth"], child["output"]) == ("succeeded", 1, {"title": "from a step"})
    assert child["trigger"]["record"]["id"] == created["id"]


def test_a_workflow_updating_its_own_record_stops_at_the_depth_limit(tmp_path: Path, sqlite_url: str) -> None:
    """A record workflow that keeps updating the record it listens to stops after max_depth levels."""
    trigger = "{type: record, entity: ticket, events: [updated]}"
    actions = "    - {id: bump, type: record.update, entity: ticket, record_id: '{{ record.id }}', " \
              "set: {n: '{{ record.n + 1 }}'}}\n"
    with kit(tmp_path, sqlite_url, max_depth=3) as k:
        k.deploy({WF.format("bumper"): wf("bumper", trigger, actions)})
        service = RecordService(k.engine)
        ticket = service.create("acme", "ticket", {"n": 0})
        service.update("acme", "ticket", ticket["id"], {"n": 1})
        k.engine.run_until_idle()
        runs = executions_of(k, "acme/bumper")
        with k.store.read() as conn:
            final = record_store.get(conn, "acme", "ticket", ticket["id"])
    assert [(r["depth"], r["status"]) for r in runs] == [(d, "succeeded") for d in range(4)]
    assert final["n"] == 5


def test_object_type_records_can_be_created_by_a_step(k: Kit) -> None:
    """record.create with entity object_type:<id> stores a record of that custom type."""
    k.directory(directory() + "object_types:\n  - {id: ot_case, name: Case}\n")
    actions = "    - {id: open, type: record.create, entity: 'object_type:ot_case', set: {title: refund}}\n" \
              "    - {id: close, type: record.update, entity: 'object_type:ot_case', " \
              "record_id: '{{ steps.open.output.id }}', set: {closed: true}}\n"
    k.deploy({WF.format("cases"): wf("cases", MANUAL, actions)})
    execution = k.show(k.run("acme/cases"))
    assert execution["status"] == "succeeded", execution["error"]
    with k.store.read() as conn:
        [case] = record_store.list_records(conn, "acme", "object_type:ot_case")
    assert (case["title"], case["closed"]) == ("refund", True)


# -- inactivity ---------------------------------------------------------------------------------------

QUIET = "{type: inactivity, entity: lead, after: 30m, when: \"{{ record.stage == 'qualified' }}\"}"


def scan(k: Kit) -> list[int]:
    with k.store.tx() as conn:
        return inactivity.scan(k.engine, conn)


def test_inactivity_fires_once_per_quiet_spell(k: Kit) -> None:
    """A record quiet for ``after`` starts one execution; it starts another only after new activity."""
    actions = "    - {id: note, type: set, vars: {lead: '{{ record.name }}', kind: '{{ trigger.type }}'}}\n"
    k.deploy({WF.format("quiet-leads"): wf("quiet-leads", QUIET, actions)})
    service = RecordService(k.engine)
    lead = service.create("acme", "lead", {"name": "Ada", "stage": "qualified"})
    service.create("acme", "lead", {"name": "Bob", "stage": "new"})
    k.clock.advance(minutes=29)
    assert scan(k) == []
    k.clock.advance(minutes=1)
    first = scan(k)
    assert len(first) == 1 and scan(k) == []
    k.clock.advance(hours=5)
    assert scan(k) == []  # still the same quiet spell
    service.update("acme", "lead", lead["id"], {"note": "called"})
    k.clock.advance(minutes=29)
    assert scan(k) == []
    k.clock.advance(minutes=1)
    second = scan(k)
    assert len(second) == 1
    k.engine.run_until_idle()
    for execution_id in first + second:
        execution = k.show(execution_id)
        assert execution["status"] == "succeeded"
        assert execution["output"] == {"lead": "Ada", "kind": "inactivity"}


# -- inbound e-mail -----------------------------------------------------------------------------------


def eml(subject: str, sender: str = "Carol <carol@customer.test>", text: str = "Hello") -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "support@acme.test"
    message["Subject"] = subject
    message["Message-ID"] = "<m1@customer.test>"
    message.set_content(text)
    return message.as_bytes()


def test_inbound_mail_starts_the_workflows_of_that_mailbox(k: Kit) -> None:
    """deliver_mail starts workflows listening on that mailbox whose ``when`` holds; trigger.* is the message."""
    when = "{type: email, mailbox: 'mailbox:mb_support', when: \"{{ 'urgent' in trigger.subject | lower }}\"}"
    other = "{type: email, mailbox: 'mailbox:mb_smtp'}"
    actions = "    - {id: note, type: set, vars: {subject: '{{ trigger.subject }}', sender: '{{ trigger.from }}', " \
              "text: '{{ trigger.text | trim }}', mailbox: '{{ trigger.mailbox }}'}}\n"
    k.deploy({WF.format("inbox"): wf("inbox", when, actions), WF.format("other"): wf("other", other, actions)})

    def deliver(raw: bytes, mailbox: str = "mailbox:mb_support") -> list[int]:
        with k.store.tx() as conn:
            return email.deliver(k.engine, conn, "acme", mailbox, raw)

    assert deliver(eml("Just saying hi")) == []
    [execution_id] = deliver(eml(f"URGENT: printer on fire {LITERAL}", text=f"see {LITERAL}"))
    k.engine.run_until_idle()
    execution = k.show(execution_id)
    assert execution["workflow"] == "acme/inbox" and execution["status"] == "succeeded"
    assert execution["output"] == {"subject": f"URGENT: printer on fire {LITERAL}",
                                   "sender": "Carol <carol@customer.test>", "text": f"see {LITERAL}",
                                   "mailbox": "mailbox:mb_support"}
    assert execution["trigger"]["message_id"] == "<m1@customer.test>"
    with pytest.raises(UsageError, match="not a mailbox reference"):
        deliver(eml("urgent"), mailbox="mb_support")
    with pytest.raises(UsageError, match="not an e-mail message"):
        deliver(b"just some bytes\n")


# -- schedules ----------------------------------------------------------------------------------------


def schedule(cron: str = "0 9 * * 1", tz: str = "UTC") -> str:
    return f"{{type: schedule, cron: '{cron}', timezone: {tz}}}"


NOTE = "    - {id: note, type: set, vars: {at: '{{ trigger.scheduled_at }}', kind: '{{ trigger.type }}'}}\n"


@pytest.fixture
def schedules(k: Kit) -> Iterator[Schedules]:
    made = Schedules(k.engine)
    try:
        yield made
    finally:
        made.shutdown()


def job_ids(schedules: Schedules) -> set[str]:
    return {job.id for job in schedules.scheduler.get_jobs()}


def test_schedules_register_fire_and_follow_crontab(k: Kit, schedules: Schedules) -> None:
    """Jobs have fixed ids, ``0 9 * * 1`` fires on Mondays, run_due starts schedule executions."""
    k.clock.advance(days=1, hours=1)  # Tuesday 2026-01-06 10:00 UTC
    k.deploy({WF.format("weekly"): wf("weekly", schedule(), NOTE),
              WF.format("berlin"): wf("berlin", schedule("0 9 * * 1-5", "Europe/Berlin"), NOTE),
              WF.format("often"): wf("often", "{type: schedule, every: 15m}", NOTE),
              WF.format("by-hand"): wf("by-hand", MANUAL, NOTE)})
    schedules.start(paused=True)
    assert job_ids(schedules) == {"schedule:acme/weekly", "schedule:acme/berlin", "schedule:acme/often"}
    monday = datetime(2026, 1, 12, 9, 0, tzinfo=UTC)
    assert schedules.next_run("acme/weekly") == monday and monday.weekday() == 0
    assert schedules.next_run("acme/berlin") == datetime(2026, 1, 7, 8, 0, tzinfo=UTC)  # 09:00 in Berlin (CET)
    assert schedules.next_run("acme/often") == datetime(2026, 1, 6, 10, 15, tzinfo=UTC)
    assert schedules.run_due(k.clock.now()) == 0
    k.clock.advance(days=6, hours=-1)  # Monday 09:00 UTC: every job is due, the 15-minute one many times over
    assert schedules.run_due(k.clock.now()) == 3
    assert schedules.run_due(k.clock.now()) == 0
    k.engine.run_until_idle()
    runs = executions_of(k, "acme/weekly")
    assert [(r["status"], r["output"]) for r in runs] == [
        ("succeeded", {"at": monday.isoformat(), "kind": "schedule"})]
    assert len(executions_of(k, "acme/often")) == 1  # missed runs coalesce into one
    assert schedules.next_run("acme/weekly") == datetime(2026, 1, 19, 9, 0, tzinfo=UTC)
    assert schedules.next_run("acme/often") == datetime(2026, 1, 12, 9, 15, tzinfo=UTC)


def test_register_is_idempotent_and_follows_git(k: Kit, schedules: Schedules) -> None:
    """Re-registering keeps next runs of unchanged workflows; an edit re-plans; disabling removes the job."""
    k.deploy({WF.format("weekly"): wf("weekly", schedule(), NOTE),
              WF.format("daily"): wf("daily", schedule("30 6 * * *"), NOTE)})
    k.clock.advance(minutes=1)  # Monday 09:01: the weekly run of today has passed
    schedules.start(paused=True)
    k.clock.advance(days=1)
    assert schedules.run_due(k.clock.now()) == 1  # daily, 06:30 on Tuesday
    after_run = schedules.next_run("acme/daily")
    assert schedules.register() == 2
    assert schedules.next_run("acme/daily") == after_run == datetime(2026, 1, 7, 6, 30, tzinfo=UTC)
    k.deploy({WF.format("daily"): wf("daily", schedule("45 7 * * *"), NOTE)})
    schedules.register()
    assert schedules.next_run("acme/daily") == datetime(2026, 1, 7, 7, 45, tzinfo=UTC)
    k.deploy({WF.format("weekly"): wf("weekly", schedule(), NOTE, enabled=False)})
    assert schedules.register() == 1
    assert job_ids(schedules) == {"schedule:acme/daily"} and schedules.next_run("acme/weekly") is None
    k.deploy({WF.format("daily"): None})
    assert schedules.register() == 0 and job_ids(schedules) == set()


def test_a_restarted_scheduler_keeps_a_missed_run(k: Kit) -> None:
    """A scheduler started again after downtime still fires the run it missed, once."""
    k.deploy({WF.format("daily"): wf("daily", schedule("30 6 * * *"), NOTE)})
    first = Schedules(k.engine)
    first.start(paused=True)
    planned = first.next_run("acme/daily")
    first.shutdown()
    k.clock.advance(days=3)  # down over three planned runs
    second = Schedules(k.engine)
    try:
        second.start(paused=True)
        assert second.next_run("acme/daily") == planned
        assert second.run_due(k.clock.now()) == 1
        assert second.next_run("acme/daily") == datetime(2026, 1, 9, 6, 30, tzinfo=UTC)
    finally:
        second.shutdown()
    k.engine.run_until_idle()
    assert [r["status"] for r in executions_of(k, "acme/daily")] == ["succeeded"]


# -- durability ---------------------------------------------------------------------------------------


def test_a_restarted_engine_finishes_waiting_executions(k: Kit, web: HttpServer, store_url: str) -> None:
    """A second engine on the same store resumes a back-off and a wait on time, re-running no finished step."""
    answer_in_turn(web, "/flaky", 503, 200)
    actions = f"""\
    - {{id: before, type: record.create, entity: task, set: {{title: before}}}}
    - {{id: call, type: http.request, url: '{web.url}/flaky', retry: {{attempts: 2, backoff: 30s}}}}
    - {{id: nap, type: wait, duration: 1h}}
    - {{id: after, type: record.create, entity: task, set: {{title: after}}}}
"""
    k.deploy({WF.format("durable"): wf("durable", MANUAL, actions)})
    execution_id = k.run("acme/durable")
    assert k.show(execution_id)["status"] == "waiting"
    store = open_store(store_url)  # the restarted process: its own connection pool, its own engine
    try:
        restarted = Engine(store, data_dir=k.data_dir, clock=k.clock, config=k.engine.config)
        assert restarted.owner != k.engine.owner
        k.clock.advance(seconds=30)
        restarted.run_until_idle()
        assert k.steps(execution_id)["nap"]["status"] == "waiting"
        k.clock.advance(minutes=59)
        assert restarted.run_until_idle() == 0
        k.clock.advance(minutes=1)
        restarted.run_until_idle()
    finally:
        store.close()
    execution = k.show(execution_id)
    assert execution["status"] == "succeeded"
    assert [(s["action_id"], s["attempts"]) for s in execution["steps"]] == [
        ("before", 1), ("call", 2), ("nap", 1), ("after", 1)]
    assert execution["steps"][2]["wait_seconds"] == 3600
    with k.store.read() as conn:
        assert sorted(r["title"] for r in record_store.list_records(conn, "acme", "task")) == ["after", "before"]
