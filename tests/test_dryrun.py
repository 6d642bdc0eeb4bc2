"""The dry run: the real interpreter over recording effects, `wfctl dry-run`, and its feature flag.

Zero side effects is shown, not assumed: the same workflows first run for real against SMTP and
HTTP servers on 127.0.0.1 (so the setup provably reaches them), then dry runs of every one of them
must leave both servers silent, no new .eml file, and every table of the store exactly as it was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from enginekit import Kit, kit
from gitutil import commit_files, make_repo
from servers import ALLOW_LOOPBACK, HttpServer, SmtpServer, http_server, smtp_server
from sqlalchemy import inspect, text

from controller.cli import cli
from controller.engine.clock import ManualClock
from controller.engine.dryrun import DryRunner, SyntheticDirectory
from controller.engine.records import RecordService
from controller.engine.scheduler import Schedules
from controller.engine.starting import start_now
from controller.store import Store

SMTP_LOGIN = ("support", "s3cret-pw")
ESCALATE = "workflows.d/acme/escalate.yaml"
REFUSED = "wfctl: error: dry run is disabled for account acme (feature flag workflow_dry_run)\n"


def directory(web: str, smtp_port: int) -> str:
    return f"""
users:
  - {{id: u_alice, name: Alice, email: alice@acme.test}}
mailboxes:
  - id: mb_smtp
    name: Acme Support
    address: support@acme.test
    kind: smtp
    smtp: {{host: 127.0.0.1, port: {smtp_port}, starttls: false, username: support, password_env: WFC_TEST_SMTP_PW}}
  - {{id: mb_outbox, name: Archive, address: archive@acme.test, kind: outbox}}
channels:
  - {{id: C1, name: oncall, webhook_url: "{web}/services/T1/B1/secret"}}
"""


def escalate(web: str, subject: str = "Urgent: {{ record.title }}") -> str:
    """Every effectful action kind, a wait, an ``if`` on record data and a call of ``notify``."""
    return f"""\
apiVersion: workflows/v1
kind: Workflow
metadata: {{name: escalate}}
spec:
  trigger: {{type: manual, entities: [ticket]}}
  actions:
    - id: mail-lead
      type: email.send
      mailbox: mailbox:mb_smtp
      to: lead@example.com
      cc: user:u_alice
      subject: "{subject}"
      body: "Ticket {{{{ record.id }}}} reported by {{{{ record.reporter.name }}}}"
    - {{id: keep-copy, type: email.send, mailbox: "mailbox:mb_outbox", to: archive@example.com, subject: Copy, body: c}}
    - {{id: tell-oncall, type: channel.post, channel: "channel:C1", text: "{{{{ record.title }}}} is urgent"}}
    - id: crm
      type: http.request
      method: POST
      url: "{web}/crm/tickets"
      json: {{ticket: "{{{{ record.id }}}}", title: "{{{{ record.title }}}}"}}
    - {{id: escalate, type: record.update, entity: ticket, record_id: "{{{{ record.id }}}}", set: {{status: escalated}}}}
    - {{id: follow-up, type: record.create, entity: task, set: {{title: "Check {{{{ record.title }}}}"}}}}
    - {{id: pause, type: wait, duration: 1h}}
    - id: still-open
      type: if
      condition: "{{{{ record.status != 'closed' }}}}"
      then:
        - {{id: managers, type: workflow.call, workflow: notify, input: {{task: "{{{{ steps['follow-up'].output.id }}}}"}}}}
      else:
        - {{id: note, type: set, vars: {{closed: true}}}}
    - {{id: done, type: set, vars: {{task: "{{{{ steps['follow-up'].output.id }}}}"}}}}
"""


def notify(web: str) -> str:
    return f"""\
apiVersion: workflows/v1
kind: Workflow
metadata: {{name: notify}}
spec:
  trigger: {{type: manual, entities: [ticket]}}
  actions:
    - {{id: page, type: http.request, method: POST, url: "{web}/pager", json: {{task: "{{{{ trigger.input.task }}}}"}}}}
    - id: mail-managers
      type: email.send
      mailbox: mailbox:mb_smtp
      to: managers@example.com
      subject: "Task {{{{ trigger.input.task }}}}"
      body: see the task
    - {{id: audit, type: record.create, entity: task, set: {{title: "Audit {{{{ trigger.input.task }}}}"}}}}
"""


def nightly(web: str) -> str:
    return f"""\
apiVersion: workflows/v1
kind: Workflow
metadata: {{name: nightly}}
spec:
  trigger: {{type: schedule, every: 1h}}
  actions:
    - {{id: report, type: http.request, url: "{web}/report"}}
    - {{id: post, type: channel.post, channel: "channel:C1", text: "report: {{{{ steps.report.output.status }}}}"}}
"""


@dataclass
class World:
    k: Kit
    url: str
    smtp: SmtpServer
    web: HttpServer
    tickets: dict[str, str]  # open | closed | live -> record id

    def wfctl(self, *args: str) -> Result:
        base = ["--repo", str(self.k.path), "--data-dir", str(self.k.data_dir), "--db", self.url]
        return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)

    def dry_run(self, *args: str) -> dict[str, Any]:
        result = self.wfctl("dry-run", *args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def world(tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("WFC_TEST_SMTP_PW", SMTP_LOGIN[1])
    with smtp_server(auth=SMTP_LOGIN) as smtp, http_server() as web, kit(tmp_path, store_url) as k:
        k.directory(directory(web.url, smtp.port))
        k.data_dir.mkdir(parents=True, exist_ok=True)
        (k.data_dir / "config.yaml").write_text(ALLOW_LOOPBACK)  # the CLI's; the servers are on 127.0.0.1
        k.deploy({ESCALATE: escalate(web.url), "workflows.d/acme/notify.yaml": notify(web.url),
                  "workflows.d/acme/nightly.yaml": nightly(web.url)})
        records = RecordService(k.engine)
        tickets = {state: records.create("acme", "ticket", {
            "title": "Printer on fire", "status": "closed" if state == "closed" else "open",
            "reporter": {"name": "Carol"}})["id"] for state in ("open", "closed", "live")}
        yield World(k, store_url, smtp, web, tickets)


def snapshot(store: Store) -> dict[str, list[str]]:
    """Every row of every table in the store (the scheduler's job table too), as sorted text."""
    with store.engine.connect() as conn:
        return {table: sorted(repr(tuple(row)) for row in conn.execute(text(f'SELECT * FROM "{table}"')))
                for table in inspect(conn).get_table_names()}


def eml_files(data_dir: Path) -> list[Path]:
    return sorted(data_dir.rglob("*.eml"))


def intents(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["action_id"]: i for i in run["dry_run"]["intents"]}


def steps(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}

    def walk(items: list[dict[str, Any]]) -> None:
        for step in items:
            found[step["action_id"]] = step
            walk(step.get("steps") or [])

    walk(run["dry_run"]["steps"])
    return found


# -- zero side effects -------------------------------------------------------------------------------


def test_dry_runs_leave_listeners_silent_and_every_table_unchanged(world: World, tmp_path: Path) -> None:
    """After a real run proves the servers are reached, dry runs of every workflow send, write and schedule nothing."""
    k = world.k
    schedules = Schedules(k.engine)
    schedules.start(paused=True)  # the nightly job is a row in the store's job table
    schedules.shutdown()
    live = start_now(k.engine, "acme/escalate", record=("ticket", world.tickets["live"]))
    k.engine.run_until_idle()
    k.clock.advance(hours=1)
    k.engine.run_until_idle()
    assert k.show(live)["status"] == "succeeded", k.show(live)["error"]
    assert len(world.smtp.messages) == 2 and len(eml_files(k.data_dir)) == 1  # mail-lead, mail-managers; keep-copy
    assert {r.path for r in world.web.requests} == {"/services/T1/B1/secret", "/crm/tickets", "/pager"}
    mails, requests, files, before = len(world.smtp.messages), len(world.web.requests), eml_files(k.data_dir), \
        snapshot(k.store)
    assert before["apscheduler_jobs"] and before["executions"] and before["records"]

    entity = tmp_path / "ticket.json"
    entity.write_text(json.dumps({"id": "77", "title": "Scanner jammed", "status": "open",
                                  "reporter": {"name": "Dave"}}))
    (k.path / ESCALATE).write_text(escalate(world.web.url, "Changed: {{ record.title }}"))  # not committed
    runs = [world.dry_run("acme/escalate", "--record", f"ticket:{world.tickets['open']}"),
            world.dry_run("acme/escalate", "--record", f"ticket:{world.tickets['closed']}"),
            world.dry_run("acme/escalate", "--entity", str(entity)),
            world.dry_run(str(k.path / ESCALATE), "--record", f"ticket:{world.tickets['open']}"),
            world.dry_run("acme/notify"), world.dry_run("acme/nightly")]
    assert all(run["dry_run"]["status"] == "succeeded" for run in runs)
    assert sum(len(run["dry_run"]["intents"]) for run in runs) >= 30  # they did mean to do a lot

    assert len(world.smtp.messages) == mails and len(world.web.requests) == requests
    assert eml_files(k.data_dir) == files
    after = snapshot(k.store)
    assert {t: len(rows) for t, rows in after.items()} == {t: len(rows) for t, rows in before.items()}
    assert after == before


def test_dry_run_of_a_missing_store_creates_no_file(tmp_path: Path) -> None:
    """`wfctl dry-run ACCOUNT/NAME` without a store says to sync first and does not create the SQLite file."""
    repo = tmp_path / "repo"
    make_repo(repo)
    result = CliRunner().invoke(cli, ["--repo", str(repo), "--data-dir", str(tmp_path / "data"),
                                      "dry-run", "acme/escalate"])
    assert result.exit_code == 2
    assert "no store at" in result.stderr and "wfctl sync" in result.stderr
    assert not (tmp_path / "data").exists()


# -- what the dry run reports ------------------------------------------------------------------------


def test_every_action_kind_reports_its_intended_side_effect(world: World) -> None:
    """Each effectful step says what it would do, with the resolved fields; made-up ids are marked synthetic."""
    web = world.web.url
    ticket = world.tickets["open"]
    run = world.dry_run("acme/escalate", "--record", f"ticket:{ticket}")
    found, trace = intents(run), steps(run)
    assert found["mail-lead"]["description"] == \
        "send e-mail from mailbox:mb_smtp to lead@example.com, subject 'Urgent: Printer on fire'"
    assert found["mail-lead"] | {"description": ""} == {
        "action_id": "mail-lead", "kind": "email.send", "workflow": "acme/escalate", "description": "",
        "mailbox": "mailbox:mb_smtp", "from": "Acme Support <support@acme.test>", "to": ["lead@example.com"],
        "cc": ["Alice <alice@acme.test>"], "subject": "Urgent: Printer on fire",
        "body": f"Ticket {ticket} reported by Carol\n"}
    assert found["keep-copy"]["description"] == \
        "send e-mail from mailbox:mb_outbox to archive@example.com, subject 'Copy'"
    assert found["tell-oncall"]["description"] == "post to channel:C1 (oncall): 'Printer on fire is urgent'"
    assert (found["tell-oncall"]["channel"], found["tell-oncall"]["text"]) == ("channel:C1", "Printer on fire is urgent")
    assert found["crm"]["description"] in (  # PostgreSQL's JSONB keeps keys in its own order
        f"POST {web}/crm/tickets with body {{'ticket': '{ticket}', 'title': 'Printer on fire'}}",
        f"POST {web}/crm/tickets with body {{'title': 'Printer on fire', 'ticket': '{ticket}'}}")
    assert (found["crm"]["method"], found["crm"]["url"], found["crm"]["json"]) == (
        "POST", f"{web}/crm/tickets", {"ticket": ticket, "title": "Printer on fire"})
    assert found["escalate"]["description"] == f"update ticket {ticket}: status=escalated"
    assert (found["escalate"]["record_id"], found["escalate"]["set"]) == (ticket, {"status": "escalated"})
    assert found["follow-up"]["description"] == "create task: title=Check Printer on fire"
    assert found["pause"]["description"] == "wait 1h (3600 s), not waited in a dry run"
    assert found["page"]["workflow"] == found["mail-managers"]["workflow"] == "acme/notify"

    task = trace["follow-up"]["output"]
    assert task["synthetic"] is True and task["id"].startswith("dry-run-task-")
    assert trace["mail-lead"]["output"]["synthetic"] is True
    assert trace["mail-lead"]["output"]["message_id"].endswith("@dry-run.invalid>")
    assert trace["crm"]["output"] == {"status": 200, "headers": {}, "json": {}, "synthetic": True}
    updated = trace["escalate"]["output"]  # the stored record, read, with the change merged in
    assert (updated["title"], updated["status"], updated["synthetic"]) == ("Printer on fire", "escalated", True)
    audit = trace["audit"]["output"]["id"]
    assert audit.startswith("dry-run-task-") and audit != task["id"]  # unique across called workflows
    assert run["dry_run"]["output"] == {"task": task["id"]}


def test_if_takes_the_branch_the_stored_record_decides(world: World) -> None:
    """An open ticket takes ``then`` (and calls notify), a closed one ``else``; the text output shows the branch."""
    opened = steps(world.dry_run("acme/escalate", "--record", f"ticket:{world.tickets['open']}"))
    closed = world.dry_run("acme/escalate", "--record", f"ticket:{world.tickets['closed']}")
    assert opened["still-open"]["branch"] == "then" and "managers" in opened and "note" not in opened
    assert steps(closed)["still-open"]["branch"] == "else" and "managers" not in steps(closed)
    assert closed["dry_run"]["output"]["closed"] is True
    shown = world.wfctl("dry-run", "acme/escalate", "--record", f"ticket:{world.tickets['closed']}")
    assert shown.exit_code == 0
    assert any(line.split()[:4] == ["still-open", "if", "succeeded", "->"] and line.split()[4] == "else"
               for line in shown.stdout.splitlines())


def test_waits_are_reported_with_their_duration_not_waited(tmp_path: Path) -> None:
    """A 30-day wait succeeds at once in the dry run, reports 2592000 s, and the steps after it run."""
    definition = {"spec": {"trigger": {"type": "manual"}, "actions": [
        {"id": "long", "type": "wait", "duration": "30d"},
        {"id": "after", "type": "set", "vars": {"done": True}}]}}
    clock = ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    runner = DryRunner(account="acme", directory=SyntheticDirectory(), definitions=lambda _: None, now=clock.now)
    started = time.monotonic()
    result = runner.run("waiter", definition, trigger={"type": "manual"})
    assert time.monotonic() - started < 5
    assert result.status == "succeeded" and result.output == {"done": True}
    wait = result.steps[0]
    assert (wait["status"], wait["output"], wait["intent"]) == (
        "succeeded", {"would_wait_seconds": 2592000}, "wait 30d (2592000 s), not waited in a dry run")
    assert [i.fields for i in result.intents] == [{"seconds": 2592000}]


def test_sub_workflows_are_dry_run_recursively(tmp_path: Path) -> None:
    """a calls b calls c: the trace nests both levels, effects carry their workflow, and a failing c fails a."""
    def calling(name: str, target: str | None, text: str = "{{ trigger.input.n }}") -> str:
        call = (f"    - {{id: call-{target}, type: workflow.call, workflow: {target}, input: {{n: '{name}'}}}}\n"
                if target else "")
        return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n"
                f"  trigger: {{type: manual, entities: [task]}}\n  actions:\n"
                f"    - {{id: note-{name}, type: record.create, entity: task, set: {{title: '{text}'}}}}\n{call}")

    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {"workflows.d/acme/a.yaml": calling("a", "b", "start"),
                                   "workflows.d/acme/b.yaml": calling("b", "c"),
                                   "workflows.d/acme/c.yaml": calling("c", None)}, "chain")
    args = ["--repo", str(repo), "--data-dir", str(tmp_path / "data"), "dry-run", str(repo / "workflows.d/acme/a.yaml")]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)["dry_run"]
    [_, call_b] = run["steps"]
    [_, call_c] = call_b["steps"]
    assert [s["action_id"] for s in call_c["steps"]] == ["note-c"]
    assert [(i["workflow"], i["description"]) for i in run["intents"]] == [
        ("acme/a", "create task: title=start"), ("acme/b", "create task: title=a"), ("acme/c", "create task: title=b")]
    ids = [s["output"]["id"] for s in (run["steps"][0], call_b["steps"][0], call_c["steps"][0])]
    assert len(set(ids)) == 3
    (repo / "workflows.d/acme/c.yaml").write_text(calling("c", None, "{{ trigger.input.missing }}"))
    failed = CliRunner().invoke(cli, args)
    assert failed.exit_code == 1
    assert "step call-b: called workflow acme/b failed: step call-c: called workflow acme/c failed: " \
           "step note-c: placeholder {{ trigger.input.missing }}" in failed.stdout


def test_a_missing_placeholder_names_the_step_and_the_placeholder(world: World, tmp_path: Path) -> None:
    """A record without ``reporter`` fails mail-lead, naming the step and ``{{ record.reporter.name }}``; exit 1."""
    entity = tmp_path / "ticket.json"
    entity.write_text(json.dumps({"id": "9", "title": "No reporter", "status": "open"}))
    result = world.wfctl("dry-run", "acme/escalate", "--entity", str(entity))
    assert result.exit_code == 1
    assert result.stdout.startswith("dry run of acme/escalate: failed - step mail-lead: placeholder "
                                    "{{ record.reporter.name }}")
    data = json.loads(world.wfctl("dry-run", "acme/escalate", "--entity", str(entity), "--json").stdout)
    assert data["ok"] is False and data["dry_run"]["status"] == "failed"
    assert [(s["action_id"], s["status"]) for s in data["dry_run"]["steps"]] == [("mail-lead", "failed")]
    assert data["dry_run"]["intents"] == []


# -- wfctl dry-run: targets, options, exit codes -----------------------------------------------------


def test_a_path_is_dry_run_as_it_is_in_the_working_tree(world: World) -> None:
    """PATH runs the uncommitted edit (and an untracked file); ACCOUNT/NAME runs the applied version."""
    (world.k.path / ESCALATE).write_text(escalate(world.web.url, "Edited: {{ record.title }}"))
    (world.k.path / "workflows.d/acme/brand-new.yaml").write_text(
        notify(world.web.url).replace("name: notify", "name: brand-new"))
    ticket = f"ticket:{world.tickets['open']}"
    edited = world.dry_run(str(world.k.path / ESCALATE), "--record", ticket)
    applied = world.dry_run("acme/escalate", "--record", ticket)
    assert intents(edited)["mail-lead"]["subject"] == "Edited: Printer on fire"
    assert intents(applied)["mail-lead"]["subject"] == "Urgent: Printer on fire"
    new = world.dry_run(str(world.k.path / "workflows.d/acme/brand-new.yaml"))
    assert new["workflow"] == "acme/brand-new" and new["dry_run"]["status"] == "succeeded"


def test_dry_run_exit_codes(world: World, tmp_path: Path) -> None:
    """0 when every step resolved, 1 when one failed or the file is invalid, 2 for every usage error."""
    entity = tmp_path / "e.json"
    entity.write_text("{}")
    not_json = tmp_path / "bad.json"
    not_json.write_text("[1, 2")
    assert world.wfctl("dry-run", "acme/escalate", "--record", f"ticket:{world.tickets['open']}").exit_code == 0
    assert world.wfctl("dry-run", "acme/escalate", "--entity", str(entity)).exit_code == 1
    usage = [("acme/escalate", "--entity", str(entity), "--record", "ticket:1"), ("acme/no-such-workflow",),
             ("nonsense",), ("acme/escalate", "--record", "ticket"), ("acme/escalate", "--record", "ticket:999"),
             ("acme/escalate", "--entity", str(not_json)), ("acme/escalate", "--entity", str(tmp_path / "nope"))]
    for args in usage:
        result = world.wfctl("dry-run", *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("wfctl: error: ") or "Usage:" in result.stderr, args
    (world.k.path / ESCALATE).write_text(escalate(world.web.url).replace("duration: 1h", "duration: soon"))
    invalid = world.wfctl("dry-run", str(world.k.path / ESCALATE))
    assert invalid.exit_code == 1 and "workflows.d/acme/escalate.yaml:" in invalid.stderr


def test_a_trigger_condition_that_does_not_hold_says_it_would_not_start(tmp_path: Path) -> None:
    """A record that the trigger's ``when`` rejects: "would not start", nothing run, exit 1."""
    repo = tmp_path / "repo"
    text_ = ("apiVersion: workflows/v1\nkind: Workflow\nmetadata: {name: urgent}\nspec:\n"
             "  trigger: {type: record, entity: ticket, events: [created], when: \"{{ record.priority == 'urgent' }}\"}\n"
             "  actions:\n    - {id: note, type: set, vars: {seen: true}}\n")
    commit_files(make_repo(repo), {"workflows.d/acme/urgent.yaml": text_}, "urgent")
    entity = tmp_path / "low.json"
    entity.write_text('{"id": "3", "priority": "low"}')
    result = CliRunner().invoke(cli, ["--repo", str(repo), "--data-dir", str(tmp_path / "data"), "dry-run",
                                      str(repo / "workflows.d/acme/urgent.yaml"), "--entity", str(entity)])
    assert result.exit_code == 1
    assert result.stdout.startswith("acme/urgent: would not start: not started: when ")


# -- the feature flag --------------------------------------------------------------------------------


def test_feature_flag_off_refuses_with_exit_3(world: World) -> None:
    """With workflow_dry_run off for acme, dry run refuses by name, for ACCOUNT/NAME and PATH alike."""
    config = world.k.data_dir / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(ALLOW_LOOPBACK + "accounts:\n  acme:\n    features: {workflow_dry_run: false}\n")
    for target in ("acme/escalate", str(world.k.path / ESCALATE)):
        result = world.wfctl("dry-run", target, "--record", f"ticket:{world.tickets['open']}")
        assert (result.exit_code, result.stdout, result.stderr) == (3, "", REFUSED)
    config.write_text(ALLOW_LOOPBACK + "features: {workflow_dry_run: false}\naccounts:\n  acme:\n"
                      "    features: {workflow_dry_run: true}\n")
    assert world.wfctl("dry-run", "acme/notify").exit_code == 0


def test_feature_flag_is_on_by_default_and_checked_per_account(tmp_path: Path) -> None:
    """An empty configuration: on. Off globally: refused for every account not switched back on; unknown flags exit 2."""
    repo = tmp_path / "repo"
    files = {f"workflows.d/{a}/hello.yaml": "apiVersion: workflows/v1\nkind: Workflow\nmetadata: {name: hello}\n"
             "spec:\n  trigger: {type: manual, entities: [ticket]}\n  actions:\n    - {id: note, type: set, vars: {a: 1}}\n"
             for a in ("acme", "globex")}
    commit_files(make_repo(repo), files, "hello")
    config = tmp_path / "flags.yaml"

    def dry(account: str) -> Result:
        return CliRunner().invoke(cli, ["--repo", str(repo), "--data-dir", str(tmp_path / "data"),
                                        "--config", str(config), "dry-run", str(repo / f"workflows.d/{account}/hello.yaml")])

    config.write_text("")  # an empty configuration: every default (a --config that does not exist is an error)
    assert dry("acme").exit_code == 0 and dry("globex").exit_code == 0
    config.write_text("features: {workflow_dry_run: false}\naccounts:\n  globex: {features: {workflow_dry_run: true}}\n")
    assert (dry("acme").exit_code, dry("acme").stderr) == (3, REFUSED)
    assert dry("globex").exit_code == 0
    config.write_text("features: {workflow_dryrun: false}\n")
    typo = dry("acme")
    assert typo.exit_code == 2 and "unknown feature flag(s) workflow_dryrun" in typo.stderr


def test_examples_without_data_dry_run_on_made_up_input(tmp_path: Path) -> None:
    """A webhook and an inbound-mail example dry-run by path with no data: made-up payload and mail, exit 0."""
    root = Path(__file__).resolve().parents[1]
    for example, step, shown in (("acme/website-contact-form", "spam-check", "\u2039trigger.body.email\u203a"),
                                 ("acme/support-inbox-triage", "acknowledge", "someone@example.com")):
        result = CliRunner().invoke(cli, ["--repo", str(root), "--data-dir", str(tmp_path / "data"), "dry-run",
                                          str(root / f"workflows.d/{example}.yaml"), "--json"])
        assert result.exit_code == 0, result.output
        assert shown in intents(json.loads(result.stdout))[step]["description"]
    assert not (tmp_path / "data").exists()
