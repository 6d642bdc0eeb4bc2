"""The impact preview: `wfctl check --replay` against a real controller with real executions and decisions.

The controller (a real HTTP server over a real store) has run ``acme/escalate`` on 100 tickets: 50 high
priority started real executions (each VIP one mailed through the outbox; each posted to a real HTTP listener
on 127.0.0.1 and flagged its ticket), 50 were filtered by the ``when``. Pull requests change the workflow; the check replays those events
through the applied and the proposed version on the controller and reports what would change.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from conftest import PG_SKIP, PG_URL, _pg_schema_url
from enginekit import DIRECTORY, Kit, kit
from servers import HttpServer, http_server
from sqlalchemy import func, select

from controller.check.check import CheckReport
from controller.check.replay import Request, compare, outcome_of, outcomes, replay
from controller.check.report import render
from controller.cli import cli
from controller.engine.clock import ManualClock
from controller.engine.dryrun import DryRunner, SyntheticDirectory
from controller.engine.records import RecordService
from controller.security import tokens
from controller.settings import Settings
from controller.store.directory import StoreDirectory
from controller.store.tables import metadata
from webhooks import create_app, start_server

PATH = "workflows.d/acme/escalate.yaml"
SNAPSHOT = Path(__file__).parent / "data" / "replay_recipient.md"
LEAD = "\n  - {id: u_lead, name: Lena Lead, email: lena.lead@acme.test, permissions: []}"


def workflow(*, when: str = "{{ record.priority == 'high' }}", to: str = "user:u_alice",
             subject: str = "VIP ticket {{ record.id }}", description: str = "Escalate urgent tickets",
             url: str = "http://127.0.0.1:9/hook") -> str:
    return f"""apiVersion: workflows/v1
kind: Workflow
metadata:
  name: escalate
  description: {description}
spec:
  trigger:
    type: record
    entity: ticket
    events: [created]
    when: "{when}"
  actions:
    - id: vip
      type: if
      condition: "{{{{ record.vip }}}}"
      then:
        - id: mail-lead
          type: email.send
          mailbox: "mailbox:mb_support"
          to: "{to}"
          subject: "{subject}"
          body: "{{{{ record.title }}}}"
      else:
        - {{id: routine, type: set, vars: {{routine: true}}}}
    - id: tell-crm
      type: http.request
      method: POST
      url: "{url}"
      json: {{ticket: "{{{{ record.id }}}}"}}
    - {{id: flag, type: record.update, entity: ticket, record_id: "{{{{ record.id }}}}", set: {{escalated: true}}}}
"""


class Live:
    def __init__(self, k: Kit, url: str, hook: HttpServer, bearers: dict[str, str], applied: str):
        self.k, self.url, self.hook, self.bearers, self.applied = k, url, hook, bearers, applied

    def workflow(self, **changes: str) -> str:
        """:func:`workflow` calling this controller's listener, with ``changes``."""
        return workflow(url=f"{self.hook.url}/crm", **changes)

    def propose(self, text: str) -> None:
        """The pull request: a commit on top of what the controller applied (not synced)."""
        self.k.commit({PATH: text}, "proposed")

    def check(self, *args: str, token: str = "replay") -> Any:
        return CliRunner().invoke(cli, ["--repo", str(self.k.path), "check", "--base", "HEAD~1", "--controller",
                                        self.url, "--token", self.bearers[token], "--replay", "100", *args])

    def replay(self, report: Any) -> dict[str, Any]:
        [found] = json.loads(report.stdout)["replays"]
        return dict(found)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def history(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The controller and its history, made once per back end (the tests only read it, and commit on top)."""
    tmp = tmp_path_factory.mktemp("replay")
    if request.param == "sqlite":
        yield from _controller(tmp, f"sqlite:///{tmp / 'store.db'}")
        return
    if not PG_URL:
        pytest.skip(PG_SKIP)
    for url in _pg_schema_url(PG_URL):
        yield from _controller(tmp, url)


@pytest.fixture
def live(history: Live) -> Live:
    """The controller's repository back at the applied commit: each test proposes its own change."""
    history.k.repo.git.reset("--hard", history.applied)
    history.k.repo.git.clean("-fdq")
    return history


def _controller(tmp: Path, store_url: str) -> Iterator[Live]:
    with http_server() as hook, kit(tmp, store_url) as k:
        k.directory(DIRECTORY.replace("permissions: [admin]}", "permissions: [admin]}" + LEAD))
        k.deploy({PATH: workflow(url=f"{hook.url}/crm")}, "escalate")
        records = RecordService(k.engine)
        for n in range(100):
            priority = "high" if n % 2 == 0 else ("medium" if n % 4 == 1 else "low")
            fields = {"title": f"printer {n} on fire", "priority": priority, "vip": n % 4 == 0}
            if n % 8 == 0:
                fields["assignee"] = {"email": f"agent{n}@acme.test"}
            records.create("acme", "ticket", fields)
            k.clock.advance(seconds=60)
            k.engine.run_until_idle()
        with k.store.tx() as conn:
            bearers = {name: tokens.create(conn, "acme", "u_alice", permissions, k.clock.now(), name=name).bearer
                       for name, permissions in [("read", ["workflow.read"]),
                                                 ("replay", ["workflow.read", "workflow.replay"]),
                                                 ("records", ["records.write"])]}
        settings = Settings(repo=str(k.path), data_dir=k.data_dir, database_url=store_url)
        server = start_server(create_app(settings, k.store, k.engine, environ={"WFC_SECRET_KEY": ""}), port=0)
        try:
            yield Live(k, server.url, hook, bearers, k.repo.head.commit.hexsha)
        finally:
            server.stop()


def effects(live: Live) -> dict[str, Any]:
    """Everything a replay must leave as it was: the row count of every table, the outbox, the listener."""
    with live.k.store.read() as conn:
        rows = {t.name: conn.execute(select(func.count()).select_from(t)).scalar() for t in metadata.sorted_tables}
    outbox = sorted(str(p) for p in live.k.data_dir.rglob("*.eml"))
    return {"rows": rows, "outbox": outbox, "calls": len(live.hook.requests)}


def test_the_controller_has_real_history(live: Live) -> None:
    """The fixture is what the tests claim: 50 executions that called and flagged (25 VIPs mailed); 50 filtered."""
    seen = effects(live)
    assert seen["calls"] == 50 and len(seen["outbox"]) == 25  # every 4th ticket is a VIP: 0, 4, ..., 96
    assert seen["rows"]["executions"] == 50
    with live.k.store.read() as conn:
        from controller.store.tables import trigger_decisions as d

        filtered = conn.execute(select(func.count()).where(d.c.decision == "filtered", d.c.event.is_not(None)))
        assert filtered.scalar() == 50


def test_a_widened_when_shows_the_events_that_would_now_start(live: Live) -> None:
    before = effects(live)
    live.propose(live.workflow(when="{{ record.priority in ['high', 'medium'] }}"))
    result = live.check("--format", "json")
    assert result.exit_code == 0, result.output
    report = live.replay(result)
    assert report["events"] == report["replayed"] == 100 and not report["truncated"]
    assert report["totals"]["would_start"] == 25 and report["totals"]["changed"] == 25
    groups = {(g["kind"], g["where"]): g for g in report["groups"]}
    assert groups[("start", "")]["count"] == 25
    assert groups[("added", "tell-crm")]["count"] == groups[("added", "flag")]["count"] == 25
    assert groups[("added", "tell-crm")]["summary"] == "would now also make an HTTP request (step tell-crm)"
    assert report["headline"].startswith("of 100 recent ticket events: 25 would now start")
    assert effects(live) == before  # zero side effects: no row, no mail, no call


def test_a_changed_recipient_names_the_field_and_the_values(live: Live) -> None:
    live.propose(live.workflow(to="user:u_lead"))
    result = live.check("--format", "json")
    assert result.exit_code == 0, result.output
    report = live.replay(result)
    [group] = report["groups"]
    assert (group["kind"], group["where"], group["count"]) == ("changed", "mail-lead.to", 25)
    assert group["summary"] == "would send an e-mail with a different recipient (to) (step mail-lead)"
    example = group["examples"][0]
    assert example["record"].startswith("ticket:") and example["event"].startswith("execution ")
    assert example["before"] == ["Alice <alice@acme.test>"] and example["after"] == ["Lena Lead <lena.lead@acme.test>"]
    assert len(group["examples"]) == 3


def test_a_template_error_on_some_records_fails_the_check(live: Live) -> None:
    live.propose(live.workflow(subject="VIP ticket for {{ record.assignee.email }}"))
    result = live.check()
    assert result.exit_code == 1, result.output
    assert "the proposed version fails on 12 event(s) the applied one handled" in result.stdout
    report = live.replay(live.check("--format", "json"))
    # VIP tickets are every 4th; those with an assignee every 8th: 25 VIPs, 13 of them with one.
    assert report["totals"]["newly_failing"] == 12
    failing = report["groups"][0]
    assert (failing["kind"], failing["where"], failing["count"]) == ("fail", "mail-lead", 12)
    assert "assignee" in failing["summary"]
    changed = {(g["kind"], g["where"]): g["count"] for g in report["groups"]}
    assert changed[("changed", "mail-lead.subject")] == 13  # the others mail with the new subject
    assert changed[("removed", "tell-crm")] == 12  # a failed run stops before its later steps


def test_a_change_nothing_observable_depends_on_says_so(live: Live) -> None:
    live.propose(live.workflow(description="Escalate urgent tickets to the lead"))
    result = live.check()
    assert result.exit_code == 0, result.output
    assert "impact preview of acme/escalate: of 100 recent ticket events: no observable change" in result.stdout
    report = live.replay(live.check("--format", "json"))
    assert report["groups"] == [] and report["totals"]["unchanged"] == 100


def test_without_workflow_replay_only_paths_and_counts_leave_the_controller(live: Live) -> None:
    live.propose(live.workflow(to="user:u_lead", subject="VIP ticket for {{ record.assignee.email }}"))
    redacted = live.check("--format", "json", token="read")
    assert redacted.exit_code == 1, redacted.output
    report = live.replay(redacted)
    assert report["values"] is False
    assert {(g["kind"], g["where"]) for g in report["groups"]} >= {("fail", "mail-lead"), ("changed", "mail-lead.to")}
    for group in report["groups"]:
        assert group["count"] > 0
        for example in group["examples"]:
            assert set(example) == {"event", "at"}
    text = json.dumps(report)
    for secret in ("acme.test", "printer", "ticket:", "assignee", "Lena"):
        assert secret not in text, secret
    full = live.replay(live.check("--format", "json", token="replay"))
    assert full["values"] is True and "lena.lead@acme.test" in json.dumps(full)
    refused = requests.post(f"{live.url}/api/v1/workflows/acme/escalate/replay", json={"source": workflow()},
                            headers={"Authorization": f"Bearer {live.bearers['records']}"}, timeout=10)
    assert refused.status_code == 403 and "workflow.read or workflow.replay" in refused.json()["error"]["message"]


def test_the_markdown_comment_matches_its_snapshot(live: Live) -> None:
    live.propose(live.workflow(to="user:u_lead"))
    result = live.check("--format", "markdown")
    assert result.exit_code == 0, result.output
    if os.environ.get("WFC_UPDATE_SNAPSHOTS"):  # after a deliberate change of the format: read the diff
        SNAPSHOT.write_text(result.stdout)
    assert result.stdout == SNAPSHOT.read_text(), result.stdout


def test_a_new_workflow_replays_the_events_of_one_like_it(live: Live) -> None:
    live.k.commit({"workflows.d/acme/escalate-copy.yaml": live.workflow().replace(
        "name: escalate", "name: escalate-copy")}, "a new workflow")
    plain = live.check("--format", "json")
    assert "acme/escalate-copy: no recent events to replay; pass --replay-like" in plain.stdout
    like = live.check("--format", "json", "--replay-like", "acme/escalate")
    [report] = json.loads(like.stdout)["replays"]
    assert report["like"] == "acme/escalate" and report["totals"]["would_start"] == 50
    assert {(g["kind"], g["where"]): g["count"] for g in report["groups"]}[("added", "flag")] == 50


def test_replay_is_bounded_and_checks_its_input(live: Live) -> None:
    client = live.k  # the API directly: the bounds are the controller's
    headers = {"Authorization": f"Bearer {live.bearers['replay']}"}
    where = f"{live.url}/api/v1/workflows/acme/escalate/replay"
    too_many = requests.post(where, json={"source": workflow(), "limit": 1001}, headers=headers, timeout=10)
    assert too_many.status_code == 422 and "1 to 1000" in too_many.json()["error"]["message"]
    broken = requests.post(where, json={"source": "spec: [", "path": PATH}, headers=headers, timeout=10)
    assert broken.status_code == 422 and PATH in broken.json()["error"]["message"]
    since = requests.post(where, json={"source": workflow(), "since": "ages"}, headers=headers, timeout=10)
    assert since.status_code == 422
    client.clock.advance(seconds=600)
    recent = requests.post(where, json={"source": workflow(), "since": "15m"}, headers=headers, timeout=10)
    assert recent.status_code == 200 and recent.json()["events"] == 5  # one ticket a minute, ten minutes since
    other = requests.post(f"{live.url}/api/v1/workflows/globex/escalate/replay", json={"source": workflow()},
                          headers=headers, timeout=10)
    assert other.status_code == 404


def test_the_time_budget_cuts_a_replay_short_and_says_so(live: Live) -> None:
    """Past ``replay.budget`` (asked before every action) nothing more is replayed; the report counts what was left
    out, and the event the budget ran out in is not half-counted."""
    looks = iter(range(10_000))
    config = replace(live.k.engine.config, replay_budget="3s")
    asked = Request("acme/escalate", live.workflow(), limit=50, values=True)
    report = replay(live.k.store, config, asked, directory=StoreDirectory(live.k.store), now=live.k.clock.now,
                    clock=lambda: 0.0 if next(looks) < 40 else 10.0)  # the budget is gone at the 40th look
    assert report["events"] == 50 and report["truncated"] is True
    assert 0 < report["replayed"] < 50 and report["totals"]["unchanged"] == report["replayed"]


def test_the_token_can_come_from_the_environment_as_in_the_ci_job(live: Live) -> None:
    """deploy/ci's impact-preview job passes the token as WFC_TOKEN, never on the command line."""
    live.propose(live.workflow(to="user:u_lead"))
    result = CliRunner(env={"WFC_TOKEN": live.bearers["read"]}).invoke(
        cli, ["--repo", str(live.k.path), "check", "--base", "HEAD~1", "--controller", live.url, "--replay", "10",
              "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert "Field paths and counts only" in result.stdout and "lena" not in result.stdout.lower()
    # the last 10 tickets (90-99): five started, two of them VIPs (92, 96)
    assert "of 10 recent ticket events: 2 would send an e-mail with a different recipient (to)" in result.stdout


def test_replaying_the_applied_version_reproduces_the_controllers_own_decisions(live: Live) -> None:
    """Parity: the replay decides with admission's own functions, so the applied version starts exactly the events
    the controller started and filters exactly those it filtered."""
    asked = Request("acme/escalate", live.workflow(), limit=1000)
    replayed = outcomes(live.k.store, live.k.engine.config, asked, directory=StoreDirectory(live.k.store),
                        now=live.k.clock.now)
    assert len(replayed.pairs) == replayed.events == 100
    for event, before, after in replayed.pairs:
        assert before.started == (event.decision == "started"), event
        assert before == after and compare(before, after) == []


def test_a_trigger_that_no_longer_takes_the_events_and_a_disabled_workflow_stop_them(live: Live) -> None:
    live.propose(live.workflow().replace("events: [created]", "events: [updated]"))
    report = live.replay(live.check("--format", "json"))
    assert report["totals"]["would_stop"] == 50 and report["totals"]["proposed_starts"] == 0
    [stop] = [g for g in report["groups"] if g["kind"] == "stop"]
    assert stop["examples"][0]["reason"] == "its trigger (record ticket updated) does not take this record event"
    live.propose(live.workflow().replace("spec:\n", "spec:\n  enabled: false\n"))
    report = live.replay(live.check("--format", "json"))
    assert report["totals"]["would_stop"] == 50
    assert {g["examples"][0]["reason"] for g in report["groups"] if g["kind"] == "stop"} == {
        "disabled (spec.enabled: false)"}


def test_a_when_that_cannot_be_evaluated_is_a_failure_not_a_filter(live: Live) -> None:
    live.propose(live.workflow(when="{{ record.nothing.deeper == 1 }}"))
    result = live.check()
    assert result.exit_code == 1, result.output
    assert "fails on 100 event(s) the applied one handled" in result.stdout
    assert "would fail at the trigger's when: the trigger's when could not be evaluated" in result.stdout


def test_effects_of_a_called_workflow_are_told_apart_by_the_call_step() -> None:
    """Two calls of one child: each call's effects are its own (a change to the second call is not hidden)."""
    child = {"spec": {"trigger": {"type": "manual"}, "actions": [
        {"id": "note", "type": "record.create", "entity": "task", "set": {"title": "{{ trigger.input.title }}"}}]}}

    def parent(second: str) -> dict[str, Any]:
        return {"spec": {"trigger": {"type": "manual"}, "actions": [
            {"id": "c1", "type": "workflow.call", "workflow": "child", "input": {"title": "one"}},
            {"id": "c2", "type": "workflow.call", "workflow": "child", "input": {"title": second}}]}}

    runner = DryRunner(account="acme", directory=SyntheticDirectory(), definitions={"child": child}.get,
                       now=ManualClock().now)
    before, after = (outcome_of(True, "", runner.run("parent", parent(title), trigger={"type": "manual"}))
                     for title in ("two", "TWO"))
    assert set(before.effects) == {"c1>acme/child:note", "c2>acme/child:note"}
    [changed] = compare(before, after)
    assert (changed.kind, changed.where, changed.before, changed.after) == (
        "changed", "c2>acme/child:note.set.title", "two", "TWO")


def test_the_markdown_comment_keeps_a_records_text_as_text() -> None:
    """A record value cannot make a link, an image, a mention, HTML or a new table cell in the comment."""
    hostile = "![x](https://evil.test/p.png) [click](https://evil.test) @octocat <b>|</b> `code`\n::error::x"
    report = CheckReport(replays=[{
        "workflow": "acme/a", "path": PATH, "events": 1, "replayed": 1, "truncated": False, "values": True,
        "headline": f"of 1 recent ticket events: 1 would fail at step s: {hostile}",
        "totals": {"newly_failing": 1}, "groups": [{"kind": "changed", "where": "s.to", "count": 1,
                                                     "summary": "would send an e-mail with a different recipient",
                                                     "examples": [{"event": "execution 1", "at": "",
                                                                   "before": hostile, "after": "b"}]}]}])
    shown = render(report, "markdown")
    for active in ("<b>", "@octocat", "https://", "\n::error"):
        assert active not in shown, active
    assert not re.search(r"(?<!\\)[\[`]", shown.split("\n", 1)[1])  # no bracket or backtick left unescaped
    assert shown.count("|") - shown.count("\\|") == 12  # the table's own: 4 each in the header, rule and row
    assert "\n::error" not in render(report, "text")


def test_a_workflow_called_by_the_change_runs_its_proposed_version(live: Live) -> None:
    """The pull request adds a sub-workflow and calls it: the replay runs the proposed sub-workflow (its effect
    appears), not "called workflow does not exist" as the applied side would have it."""
    child = ("apiVersion: workflows/v1\nkind: Workflow\nmetadata: {name: open-task}\nspec:\n"
             "  trigger: {type: manual, entities: [ticket]}\n  actions:\n"
             "    - {id: make, type: record.create, entity: task, set: {title: \"{{ trigger.input.title }}\"}}\n")
    parent = live.workflow() + (
        "    - {id: task, type: workflow.call, workflow: open-task, input: {title: \"{{ record.title }}\"}}\n")
    live.k.commit({PATH: parent, "workflows.d/acme/open-task.yaml": child}, "a sub-workflow and its call")
    result = live.check("--format", "json")
    assert result.exit_code == 0, result.output
    [report] = [r for r in json.loads(result.stdout)["replays"] if r["workflow"] == "acme/escalate"]
    groups = {(g["kind"], g["where"]): g for g in report["groups"]}
    assert report["totals"]["newly_failing"] == 0
    assert groups[("added", "task>acme/open-task:make")]["count"] == 50
    assert groups[("added", "task>acme/open-task:make")]["examples"][0]["after"]["set.title"].startswith("printer ")
