"""The bundled example repository runs end to end: every workflow in ``workflows.d/`` on the real engine.

The examples call hosts such as ``https://crm.acme.test``; our own Effects boundary sends those calls
(and the chat webhooks of ``deploy/directory/``) to one real HTTP server on 127.0.0.1 by swapping only
scheme and host, so the path tells which service was called. Mail goes to the outbox folders the
example directories configure. Time is a manual clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import pytest
from enginekit import Kit, kit
from servers import HttpServer, RecordedRequest, http_server
from sqlalchemy import select

from controller.engine.effects import Effects, HttpCall
from controller.engine.queue import ExecutionRow
from controller.engine.records import RecordService
from controller.engine.runtime import Engine, live_effects
from controller.engine.scheduler import Schedules
from controller.engine.starting import start_now
from controller.engine.triggers import email, inactivity
from controller.errors import GuardError
from controller.model.directory import parse_directory
from controller.model.entries import DirectoryEntry
from controller.store import records as record_store
from controller.store import views
from controller.store.directory import replace_account
from controller.store.tables import executions

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "workflows.d").glob("*/*.yaml") if not p.name.endswith(".tests.yaml"))
LITERAL = "{{ 7*7 }}"

# Webhook paths of the channels in deploy/directory/*.yaml.
ONCALL = "/services/T0ACME/B0ONCALL/example"
SALES = "/services/T0ACME/B0SALES/example"
MANAGERS = "/services/T0ACME/B0MANAGERS/example"
INCIDENTS = "/services/T0GLOBEX/B0INCIDENTS/example"
LEADERSHIP = "/services/T0GLOBEX/B0LEADERS/example"

# Which test runs which example, and how; test_every_example_is_run checks that none is left out.
COVERED = {
    "acme/daily-overdue-deals": "schedule (run_due), both branches",
    "acme/escalate-urgent-tickets": "record created, both branches after the wait",
    "acme/notify-managers": "workflow.call from daily-overdue-deals and escalate-urgent-tickets",
    "acme/nurture-new-leads": "record created (directly and by website-contact-form), both branches",
    "acme/stale-lead-follow-up": "inactivity",
    "acme/support-inbox-triage": "email, both branches and the when filter",
    "acme/website-contact-form": "webhook payload (start_now), both branches",
    "globex/incident-intake": "webhook payload (start_now), critical and not",
    "globex/page-on-call": "workflow.call from incident-intake",
    "globex/renewal-reminders": "inactivity",
    "globex/sync-opportunities": "disabled, then enabled in git and run by schedule",
    "globex/weekly-pipeline-report": "schedule (run_due) on Monday 07:30 Chicago",
}


def reroute(url: str, base: str) -> str:
    """``url`` with the scheme and host of ``base``; path and query stay."""
    parts, target = urlsplit(url), urlsplit(base)
    return urlunsplit((target.scheme, target.netloc, parts.path, parts.query, parts.fragment))


@dataclass
class Rerouted:
    """The live effects, with every HTTP call and chat webhook sent to the local server instead."""

    inner: Effects
    base: str

    def send_email(self, account: str, mailbox: DirectoryEntry, message: EmailMessage) -> dict[str, Any]:
        return self.inner.send_email(account, mailbox, message)

    def post_channel(self, account: str, channel: DirectoryEntry, payload: dict[str, Any],
                     headers: dict[str, str] | None = None) -> dict[str, Any]:
        local = {**channel.data, "webhook_url": reroute(str(channel.data["webhook_url"]), self.base)}
        return self.inner.post_channel(account, replace(channel, data=local), payload, headers)

    def http_request(self, call: HttpCall) -> dict[str, Any]:
        return self.inner.http_request(replace(call, url=reroute(call.url, self.base)))

    def create_record(self, account: str, entity: str, data: dict[str, Any]) -> dict[str, Any]:
        return self.inner.create_record(account, entity, data)

    def update_record(self, account: str, entity: str, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        return self.inner.update_record(account, entity, record_id, data)


@dataclass
class Examples:
    """The example repository synced into a store, its directories loaded, a server standing in for the web."""

    k: Kit
    web: HttpServer

    @property
    def engine(self) -> Engine:
        return self.k.engine

    @property
    def records(self) -> RecordService:
        return RecordService(self.k.engine)

    def runs(self, key: str) -> list[dict[str, Any]]:
        with self.k.store.read() as conn:
            ids = conn.execute(select(executions.c.id).where(executions.c.workflow_key == key)
                               .order_by(executions.c.id)).scalars().all()
        return [self.k.show(i) for i in ids]

    def steps(self, execution: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {s["action_id"]: s for s in execution["steps"]}

    def advance(self, **delta: float) -> None:
        self.k.clock.advance(**delta)
        self.engine.run_until_idle()

    def scan(self) -> list[int]:
        with self.k.store.tx() as conn:
            return inactivity.scan(self.engine, conn)

    def deliver(self, account: str, mailbox: str, message: EmailMessage) -> list[int]:
        with self.k.store.tx() as conn:
            return email.deliver(self.engine, conn, account, mailbox, message.as_bytes())

    def sent(self, path: str) -> list[RecordedRequest]:
        with self.web.lock:
            return [r for r in self.web.requests if r.path.split("?", 1)[0] == path]

    def outbox(self, account: str, mailbox: str) -> list[EmailMessage]:
        folder = self.k.data_dir / "outbox" / account / mailbox
        return [cast(EmailMessage, BytesParser(policy=policy.default).parsebytes(p.read_bytes()))
                for p in sorted(folder.glob("*.eml"))]

    def stored(self, account: str, type_: str) -> list[dict[str, Any]]:
        with self.k.store.read() as conn:
            return list(reversed(record_store.list_records(conn, account, type_)))


@pytest.fixture
def ex(tmp_path: Path, store_url: str) -> Iterator[Examples]:
    with http_server() as web:
        def effects(engine: Engine, execution: ExecutionRow) -> Effects:
            return Rerouted(live_effects(engine, execution), web.url)

        with kit(tmp_path, store_url, effects=effects) as k:
            for account in ("acme", "globex"):
                path = ROOT / "deploy" / "directory" / f"{account}.yaml"
                with k.store.tx() as conn:
                    replace_account(conn, account, parse_directory(path.read_text(encoding="utf-8"), str(path)),
                                    k.clock.now())
            k.deploy({str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in EXAMPLES}, "examples")
            yield Examples(k, web)


def mail(subject: str, sender: str = "Carol Customer <carol@customer.test>", text: str = "Hello") -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "support@acme.test"
    message["Subject"] = subject
    message.set_content(text)
    return message


def test_every_example_is_run_here() -> None:
    """Each workflow in workflows.d/ is listed in COVERED, so a new example needs a run test here."""
    assert {f"{p.parent.name}/{p.stem}" for p in EXAMPLES} == set(COVERED)


def test_examples_sync_with_their_directories(ex: Examples) -> None:
    """With deploy/directory/ loaded, every example applies as version 1 and is Synced."""
    with ex.k.store.read() as conn:
        state = views.status(conn)["workflows"]
    assert {(w["id"], w["version"], w["sync"]) for w in state} == {(key, 1, "Synced") for key in COVERED}


# -- acme -------------------------------------------------------------------------------------------


def ticket(title: str, **fields: Any) -> dict[str, Any]:
    return {"title": title, "priority": "urgent", "status": "open", "description": f"About {title}",
            "assignee": {"email": "dana@acme.test"}, "reporter": {"name": "Erin"}, **fields}


def test_escalate_urgent_tickets_and_notify_managers(ex: Examples) -> None:
    """Urgent tickets mail the lead at once; an hour later the open one pages on-call and tells the managers."""
    still_open = ex.records.create("acme", "ticket", ticket(f"VPN down {LITERAL}"))
    closed_soon = ex.records.create("acme", "ticket", ticket("Printer jam"))
    ex.records.create("acme", "ticket", ticket("Typo on the website", priority="low"))
    ex.engine.run_until_idle()
    runs = ex.runs("acme/escalate-urgent-tickets")
    assert [r["status"] for r in runs] == ["waiting", "waiting"]  # its own record.update starts nothing
    mails = ex.outbox("acme", "mb_support")
    assert sorted(m["Subject"] for m in mails) == ["Urgent: Printer jam", f"Urgent: VPN down {LITERAL}"]
    assert {(m["To"], m["Cc"]) for m in mails} == {("Alice Example <alice@acme.test>", "dana@acme.test")}
    assert f"Ticket {still_open['id']} was marked urgent by Erin." in mails[0].get_content() + mails[1].get_content()
    assert all(r["escalated"] is True for r in ex.stored("acme", "ticket") if r["priority"] == "urgent")

    ex.records.update("acme", "ticket", closed_soon["id"], {"status": "closed"})
    ex.advance(minutes=59)
    assert ex.sent(ONCALL) == []
    ex.advance(minutes=1)
    runs = ex.runs("acme/escalate-urgent-tickets")
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"], [r["error"] for r in runs]
    assert "page-oncall" in ex.steps(runs[0]) and "page-oncall" not in ex.steps(runs[1])
    assert [r.json for r in ex.sent(ONCALL)] == [
        {"text": f":rotating_light: VPN down {LITERAL} is still open after an hour (ticket {still_open['id']})"}]
    [child] = ex.runs("acme/notify-managers")
    assert child["status"] == "succeeded" and child["trigger"]["type"] == "call"
    link = f"https://support.acme.test/tickets/{still_open['id']}"
    assert [r.json for r in ex.sent(MANAGERS)] == [{"text": f"Unresolved urgent ticket: VPN down {LITERAL} <{link}>"}]
    [to_managers] = [m for m in ex.outbox("acme", "mb_support") if m["Subject"].startswith("Unresolved")]
    assert to_managers["To"] == "Alice Example <alice@acme.test>, Bob Example <bob@acme.test>"
    assert link in to_managers.get_content()


def lead(first: str, last: str, **fields: Any) -> dict[str, Any]:
    return {"first_name": first, "last_name": last, "email": f"{first.lower()}@lead.test", "status": "new",
            **fields}


def test_nurture_new_leads_follows_up_or_marks_engaged(ex: Examples) -> None:
    """New leads get a welcome; two days on, a silent one gets a follow-up and a call task, a replied one is engaged."""
    silent = ex.records.create("acme", "lead", lead("Ada", "Lovelace", owner_id="u_alice"))
    replied = ex.records.create("acme", "lead", lead("Grace", "Hopper"))
    ex.records.create("acme", "lead", {"first_name": "No", "last_name": "Mail"})
    ex.engine.run_until_idle()
    assert [r["status"] for r in ex.runs("acme/nurture-new-leads")] == ["waiting", "waiting"]
    welcomes = ex.outbox("acme", "mb_sales")
    assert sorted(m["Subject"] for m in welcomes) == ["Welcome to Acme, Ada", "Welcome to Acme, Grace"]
    assert welcomes[0].get_content_type() == "text/html"

    ex.records.update("acme", "lead", replied["id"], {"status": "replied"})
    ex.advance(days=2)
    first, second = ex.runs("acme/nurture-new-leads")
    assert (first["status"], second["status"]) == ("waiting", "succeeded")
    assert "Anything we can help with, Ada?" in [m["Subject"] for m in ex.outbox("acme", "mb_sales")]
    assert {r["id"]: r.get("stage") for r in ex.stored("acme", "lead")}[replied["id"]] == "engaged"

    ex.advance(days=3)
    assert ex.runs("acme/nurture-new-leads")[0]["status"] == "succeeded"
    [task] = ex.stored("acme", "task")
    assert (task["title"], task["assignee"], task["lead_id"], task["due_in_days"]) == (
        "Call Ada Lovelace", "u_alice", silent["id"], 1)


def test_website_contact_form_creates_leads_unless_spam(ex: Examples) -> None:
    """A webhook payload is spam-checked; a real contact becomes a lead (which nurture then follows), spam does not."""
    ex.web.respond("/v1/score", json_body={"score": 0.1})
    payload = {"email": " Jane@Example.COM ", "name": " Jane Doe ", "message": f"Call me {LITERAL}"}
    real = start_now(ex.engine, "acme/website-contact-form", payload=payload)
    ex.engine.run_until_idle()
    execution = ex.k.show(real)
    assert execution["status"] == "succeeded", execution["error"]
    assert execution["trigger"] == {"type": "webhook", "source": "run", "body": payload, "input": {}}
    [check] = ex.sent("/v1/score")
    assert check.json == {"email": "jane@example.com", "message": f"Call me {LITERAL}"}
    assert ex.steps(execution)["spam-check"]["input"]["url"] == "https://spamcheck.example.com/v1/score"
    [new_lead] = ex.stored("acme", "lead")
    assert (new_lead["email"], new_lead["name"], new_lead["message"]) == ("jane@example.com", "Jane Doe",
                                                                          f"Call me {LITERAL}")
    assert [r.json for r in ex.sent(SALES)] == [{"text": "New website lead: Jane Doe <jane@example.com>"}]

    [nurture] = ex.runs("acme/nurture-new-leads")  # the lead a step created starts nurture, one level deeper
    assert [m["Subject"] for m in ex.outbox("acme", "mb_sales")] == ["Welcome to Acme, Jane Doe"]
    ex.advance(days=2)
    ex.advance(days=3)
    assert ex.k.show(nurture["id"])["status"] == "succeeded", ex.k.show(nurture["id"])["error"]
    assert [t["title"] for t in ex.stored("acme", "task")] == ["Call Jane Doe"]

    ex.web.respond("/v1/score", json_body={"score": 0.93})
    spam = start_now(ex.engine, "acme/website-contact-form", payload={**payload, "email": "bot@spam.test"})
    ex.engine.run_until_idle()
    assert ex.k.show(spam)["status"] == "succeeded"
    assert len(ex.stored("acme", "lead")) == 1 and len(ex.sent(SALES)) == 1


def test_stale_lead_follow_up_after_three_quiet_days(ex: Examples) -> None:
    """A qualified lead quiet for three days gets a follow-up task and is flagged stale; others are left alone."""
    qualified = ex.records.create("acme", "lead", {"company": "Initech", "stage": "qualified", "owner_id": "u_bob"})
    ex.records.create("acme", "lead", {"company": "Hooli", "stage": "new", "owner_id": "u_bob"})
    ex.k.clock.advance(days=2, hours=23)
    assert ex.scan() == []
    ex.k.clock.advance(hours=1)
    [execution_id] = ex.scan()
    assert ex.scan() == []
    ex.engine.run_until_idle()
    execution = ex.k.show(execution_id)
    assert execution["status"] == "succeeded" and execution["trigger"]["type"] == "inactivity"
    [task] = ex.stored("acme", "task")
    assert (task["title"], task["assignee"], task["lead_id"]) == (
        "Follow up with Initech (quiet for 3 days)", "u_bob", qualified["id"])
    flagged = {r["company"]: r for r in ex.stored("acme", "lead")}
    assert flagged["Initech"]["stale"] is True and flagged["Initech"]["stale_since"] == ex.k.clock.now().isoformat()
    assert "stale" not in flagged["Hooli"]


def test_support_inbox_triage_files_billing_cases_and_tickets(ex: Examples) -> None:
    """Mail to support becomes a billing case or a ticket and is acknowledged; automatic replies are ignored."""
    assert ex.deliver("acme", "mailbox:mb_support", mail("Automatic reply: out of office")) == []
    billing = ex.deliver("acme", "mailbox:mb_support", mail("Refund for Invoice 42", text="Please refund me."))
    support = ex.deliver("acme", "mailbox:mb_support", mail(f"Cannot log in {LITERAL}", text="Help"))
    ex.engine.run_until_idle()
    for execution_id in billing + support:
        assert ex.k.show(execution_id)["status"] == "succeeded", ex.k.show(execution_id)["error"]
    [case] = ex.stored("acme", "object_type:ot_billing_case")
    assert (case["title"], case["customer_email"], case["body"].strip()) == (
        "Refund for Invoice 42", "Carol Customer <carol@customer.test>", "Please refund me.")
    [new_ticket] = ex.stored("acme", "ticket")
    assert (new_ticket["title"], new_ticket["priority"], new_ticket["tags"]) == (
        f"Cannot log in {LITERAL}", "normal", ["email", "inbound"])
    assert ex.runs("acme/escalate-urgent-tickets") == []  # a normal ticket is no escalation
    acks = ex.outbox("acme", "mb_support")
    assert sorted(m["Subject"] for m in acks) == [f"Re: Cannot log in {LITERAL}", "Re: Refund for Invoice 42"]
    assert {m["To"] for m in acks} == {"Carol Customer <carol@customer.test>"}


# -- globex -----------------------------------------------------------------------------------------


def test_incident_intake_pages_on_call_for_critical_alerts(ex: Examples) -> None:
    """Every alert becomes an issue and an announcement; a critical one pages on-call through page-on-call."""
    ex.web.respond("/api/v2/schedules/primary/on-call", json_body={"user_id": "PX1", "email": "oncall@globex.test"})
    ex.web.respond("/api/v2/pages", status=202, json_body={"id": "page-1"})
    critical = start_now(ex.engine, "globex/incident-intake",
                         payload={"alert": "Disk full", "service": "db", "severity": "critical"})
    warning = start_now(ex.engine, "globex/incident-intake",
                        payload={"alert": "Slow queries", "service": "db", "severity": "warning"})
    ex.engine.run_until_idle()
    assert [ex.k.show(i)["status"] for i in (critical, warning)] == ["succeeded", "succeeded"]
    issues = ex.stored("globex", "issue")
    assert [(i["title"], i["runbook"]) for i in issues] == [
        ("[CRITICAL] Disk full", "https://wiki.globex.test/runbooks/db"),
        ("[WARNING] Slow queries", "https://wiki.globex.test/runbooks/db")]
    assert [r.json["text"] for r in ex.sent(INCIDENTS)] == [
        f"Disk full on db: issue {issues[0]['id']}", f"Slow queries on db: issue {issues[1]['id']}"]
    [page_run] = ex.runs("globex/page-on-call")
    assert page_run["status"] == "succeeded"
    assert page_run["trigger"]["input"] == {"issue_id": issues[0]["id"], "summary": "Disk full"}
    [page] = ex.sent("/api/v2/pages")
    assert page.json == {"user": "PX1", "message": "Disk full", "urgency": "high"}
    assert page.headers["Idempotency-Key"] == f"page-{issues[0]['id']}"
    [details] = ex.outbox("globex", "mb_sre")
    assert (details["Subject"], details["To"], details["Cc"]) == (
        "Paged: Disk full", "oncall@globex.test", "Hank Scorpio <hank@globex.test>")


def test_renewal_reminders_for_quiet_open_renewals(ex: Examples) -> None:
    """An open renewal quiet for 14 days mails its owner and gets a task; won or non-renewal ones do not."""
    quiet = ex.records.create("globex", "opportunity", {"kind": "renewal", "stage": "negotiation",
                                                        "account_name": "Initech",
                                                        "owner": {"email": "olga@globex.test"}})
    ex.records.create("globex", "opportunity", {"kind": "renewal", "stage": "won", "account_name": "Hooli"})
    ex.records.create("globex", "opportunity", {"kind": "new-business", "stage": "open", "account_name": "Acme"})
    ex.k.clock.advance(days=13)
    assert ex.scan() == []
    ex.k.clock.advance(days=1)
    [execution_id] = ex.scan()
    ex.engine.run_until_idle()
    assert ex.k.show(execution_id)["status"] == "succeeded"
    [reminder] = ex.outbox("globex", "mb_accounts")
    assert (reminder["Subject"], reminder["To"]) == ("Renewal of Initech has gone quiet", "olga@globex.test")
    [task] = ex.stored("globex", "task")
    assert (task["title"], task["opportunity_id"]) == ("Call Initech about their renewal", quiet["id"])


# -- schedules --------------------------------------------------------------------------------------


@pytest.fixture
def schedules(ex: Examples) -> Iterator[Schedules]:
    made = Schedules(ex.engine)
    made.start(paused=True)
    try:
        yield made
    finally:
        made.shutdown()


def test_scheduled_examples_run_at_their_local_times(ex: Examples, schedules: Schedules) -> None:
    """The weekly report posts on Monday 07:30 Chicago; overdue deals post a digest and escalate, or note all clear."""
    assert schedules.next_run("globex/weekly-pipeline-report") == datetime(2026, 1, 5, 13, 30, tzinfo=UTC)
    assert schedules.next_run("acme/daily-overdue-deals") == datetime(2026, 1, 6, 7, 0, tzinfo=UTC)  # 08:00 Berlin
    assert schedules.next_run("globex/sync-opportunities") is None  # disabled in git
    ex.web.respond("/api/reports/pipeline", json_body={"open_count": 12, "won_count": 3, "lost_count": 1})
    ex.web.respond("/api/deals", json_body={"deals": [{"name": "Initech"}, {"name": "Hooli"}]})

    ex.k.clock.advance(hours=4, minutes=30)
    assert schedules.run_due(ex.k.clock.now()) == 1
    ex.engine.run_until_idle()
    [report] = ex.runs("globex/weekly-pipeline-report")
    assert report["status"] == "succeeded" and report["trigger"]["type"] == "schedule"
    assert [r.json["text"] for r in ex.sent(LEADERSHIP)] == ["Pipeline last week: 12 open,\n3 won, 1 lost.\n"]

    ex.k.clock.advance(hours=17, minutes=30)  # Tuesday 07:00 UTC
    assert schedules.run_due(ex.k.clock.now()) == 1
    ex.engine.run_until_idle()
    [digest] = ex.runs("acme/daily-overdue-deals")
    assert digest["status"] == "succeeded", digest["error"]
    assert [r.json["text"] for r in ex.sent(SALES)] == ["2 deals are overdue today: Initech, Hooli"]
    assert ex.sent("/api/deals")[0].path == "/api/deals?overdue=true"
    [managers] = ex.runs("acme/notify-managers")
    assert managers["status"] == "succeeded" and managers["trigger"]["input"]["subject"] == "2 overdue deals"
    assert [r.json["text"] for r in ex.sent(MANAGERS)] == [
        "2 overdue deals <https://crm.acme.test/deals?filter=overdue>"]

    ex.web.respond("/api/deals", json_body={"deals": []})
    ex.k.clock.advance(days=1)
    assert schedules.run_due(ex.k.clock.now()) == 1
    ex.engine.run_until_idle()
    clear = ex.runs("acme/daily-overdue-deals")[1]
    assert (clear["status"], clear["output"]) == ("succeeded", {"all_clear": True})
    assert len(ex.sent(SALES)) == 1 and len(ex.runs("acme/notify-managers")) == 1


def test_sync_opportunities_runs_once_enabled_in_git(ex: Examples, schedules: Schedules) -> None:
    """The disabled example refuses to run; enabled by a commit, its schedule copies a partner's stage change."""
    with pytest.raises(GuardError, match="disabled"):
        start_now(ex.engine, "globex/sync-opportunities")
    opportunity = ex.records.create("globex", "opportunity", {"kind": "renewal", "stage": "negotiation"})
    ex.web.respond("/api/opportunities/changes",
                   json_body={"changes": [{"opportunity_id": int(opportunity["id"]), "stage": "won"}]})
    path = "workflows.d/globex/sync-opportunities.yaml"
    ex.k.deploy({path: (ROOT / path).read_text(encoding="utf-8").replace("enabled: false", "enabled: true")}, "enable")
    schedules.register()
    assert schedules.next_run("globex/sync-opportunities") == ex.k.clock.now().replace(minute=30)
    ex.k.clock.advance(minutes=30)
    assert schedules.run_due(ex.k.clock.now()) == 1
    ex.engine.run_until_idle()
    [run] = ex.runs("globex/sync-opportunities")
    assert run["status"] == "succeeded", run["error"]
    assert ex.sent("/api/opportunities/changes")[0].path == "/api/opportunities/changes?window=30m"
    [stored] = ex.stored("globex", "opportunity")
    assert (stored["stage"], stored["synced_at"]) == ("won", ex.k.clock.now().isoformat())
