"""Safeguards: drop alerts, burst-failure alerts, mailbox and channel suspensions, alert delivery.

Through the real engine (SQLite and PostgreSQL, manual clock) and, for "across processes", two
`python` processes bursting into one store; sinks are real HTTP and SMTP servers on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from enginekit import Kit, kit
from gitutil import commit_files
from servers import ALLOW_LOOPBACK, http_server, smtp_server
from sqlalchemy import func, select
from test_admission import two  # noqa: F401 - the fixture of two engines over one store

from controller.cli import cli
from controller.config import Config, load_config
from controller.errors import GuardError, RateLimited, UsageError
from controller.safeguards import alerts, delivery, suspension
from controller.store import views
from controller.store.tables import alert_deliveries, audit_events, trigger_decisions

WF = "workflows.d/acme/{}.yaml"
HERE = Path(__file__).resolve().parent


def wf(name: str, actions: str, *, trigger: str = "{type: manual, entities: [ticket]}", extra: str = "") -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  trigger: {trigger}\n"
            f"{extra}  actions:\n{actions}")


OK = "    - {id: note, type: set, vars: {n: 1}}\n"
BROKEN = "    - {id: boom, type: set, vars: {n: '{{ trigger.nothing.here }}'}}\n"
MAIL = "    - {id: tell, type: email.send, mailbox: 'mailbox:mb_support', to: a@acme.test, subject: hi, body: hi}\n"
POST = "    - {id: page, type: channel.post, channel: 'channel:C1', text: hi}\n"
LIMITED = wf("limited", OK, extra="  rateLimit: {max: 10, per: 1m}\n")


def configured(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(ALLOW_LOOPBACK + text)  # the sinks are test servers on 127.0.0.1
    return load_config(path)


@pytest.fixture
def hook_sink() -> Iterator[Any]:
    with http_server() as web:
        yield web


def sinks(url: str) -> str:
    return f"alerts:\n  sinks:\n    - {{type: webhook, url: '{url}/alerts'}}\n"


def all_alerts(k: Kit, kind: str | None = None) -> list[dict[str, Any]]:
    with k.store.read() as conn:
        found = alerts.listing(conn)
    return [a for a in found if kind is None or a["kind"] == kind]


def deliveries(k: Kit) -> list[dict[str, Any]]:
    with k.store.read() as conn:
        return [dict(r) for r in conn.execute(select(alert_deliveries).order_by(alert_deliveries.c.id)).mappings()]


def burst(k: Kit, n: int) -> tuple[int, int]:
    started = dropped = 0
    for _ in range(n):
        try:
            k.engine.start("acme/limited", {"type": "manual"})
            started += 1
        except RateLimited:
            dropped += 1
    return started, dropped


def test_a_burst_of_drops_is_one_alert_then_a_cooldown(tmp_path: Path, store_url: str, hook_sink: Any) -> None:
    """1,000 triggers against max 10 per 1m: 10 executions, 990 drops, one alert; again within the hour: none;
    after the cooldown: one, saying how many were dropped meanwhile."""
    config = configured(tmp_path, sinks(hook_sink.url))
    with kit(tmp_path, store_url, config=config) as k:
        k.deploy({WF.format("limited"): LIMITED})
        assert burst(k, 1000) == (10, 990)
        [alert] = all_alerts(k, "drops")
        assert (alert["status"], alert["notifications"], alert["count"]) == ("open", 1, 990)
        assert alert["summary"] == "acme/limited dropped 10 trigger(s) over its rate limit within 15 minutes"
        assert alert["details"]["triggers"] == {"manual": 990}
        assert len(deliveries(k)) == 1

        k.clock.advance(minutes=20)  # quiet for longer than the window: resolved; a new burst opens a new alert
        assert burst(k, 1000) == (10, 990)
        found = all_alerts(k, "drops")
        assert [a["status"] for a in found] == ["open", "resolved"]
        assert [a["notifications"] for a in found] == [0, 1]  # within the cooldown: counted, not notified
        assert len(deliveries(k)) == 1

        k.clock.advance(minutes=45)  # 65 minutes after the first notice
        assert burst(k, 20) == (10, 10)
        latest = all_alerts(k, "drops")[0]
        assert latest["notifications"] == 1 and len(deliveries(k)) == 2
        # 980 after the first notice, 990 in the second burst, 10 now: every drop since the last notice.
        assert latest["summary"] == "acme/limited dropped 1980 trigger(s) over its rate limit since the last alert"
        sent = delivery.deliver_due(k.store, config, k.clock.now())
        assert sent == 2 and [r.path for r in hook_sink.requests] == ["/alerts", "/alerts"]
        assert hook_sink.requests[1].json["alert"]["kind"] == "drops"
        with k.store.read() as conn:
            counted = conn.execute(select(func.count()).where(trigger_decisions.c.decision == "dropped")).scalar_one()
        assert counted == 1990


def test_two_processes_bursting_into_one_store_make_one_alert(tmp_path: Path, store_url: str) -> None:
    """Two engine processes, 500 triggers each, one store: 10 executions, 990 drops, exactly one notification."""
    config_path = tmp_path / "config.yaml"
    config_path.write_text("alerts:\n  sinks:\n    - {type: webhook, url: 'http://127.0.0.1:9/alerts'}\n")
    with kit(tmp_path, store_url) as k:
        k.deploy({WF.format("limited"): LIMITED})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    workers = [subprocess.Popen([sys.executable, str(HERE / "burstkit.py"), store_url, str(config_path),
                                 str(tmp_path / f"data{i}"), "acme/limited", "500"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out))
    assert sum(r["started"] for r in results) == 10 and sum(r["dropped"] for r in results) == 990
    with kit(tmp_path / "again", store_url) as k:
        found = all_alerts(k, "drops")
        assert len(found) == 1 and found[0]["notifications"] == 1 and found[0]["count"] == 990
        assert len(deliveries(k)) == 1


def test_twenty_failures_in_a_minute_are_one_burst_alert(tmp_path: Path, store_url: str) -> None:
    config = configured(tmp_path, "alerts:\n  failures: {threshold: 5, window: 10m}\n  cooldown: 1h\n")
    with kit(tmp_path, store_url, config=config) as k:
        k.deploy({WF.format("broken"): wf("broken", OK + BROKEN), WF.format("fine"): wf("fine", OK)})
        for _ in range(20):
            k.engine.start("acme/broken", {"type": "manual"})
            k.engine.start("acme/fine", {"type": "manual"})
            k.engine.run_until_idle()
            k.clock.advance(seconds=3)
        [alert] = all_alerts(k)
        assert (alert["workflow"], alert["kind"], alert["count"], alert["notifications"]) == (
            "acme/broken", "failures", 20, 1)
        assert alert["summary"] == "acme/broken: 5 failed execution(s) within 10 minutes, failing at step boom (set)"
        assert alert["details"]["action"] == "boom" and "trigger.nothing" in alert["details"]["last_error"]
        assert alert["details"]["classes"] == {"template": 20}
        k.clock.advance(minutes=11)
        with k.store.tx() as conn:
            assert alerts.resolve_quiet(conn, config, k.clock.now()) == 1
        assert all_alerts(k)[0]["status"] == "resolved"


DIRECTORY = """
users:
  - {id: u_alice, name: Alice, email: alice@acme.test}
mailboxes:
  - {id: mb_support, name: Support, address: support@acme.test, kind: outbox}
  - {id: mb_sales, name: Sales, address: sales@acme.test, kind: outbox}
channels:
  - {id: C1, name: oncall, webhook_url: "http://127.0.0.1:9/hook"}
"""


def test_a_disconnected_mailbox_suspends_exactly_its_dependents(tmp_path: Path, store_url: str) -> None:
    with smtp_server() as smtp:
        config = configured(tmp_path, f"notifications:\n  smtp: {{host: 127.0.0.1, port: {smtp.port}, starttls: false}}\n"
                                      "  from: wfctl@ops.test\n")
        with kit(tmp_path, store_url, config=config) as k:
            k.directory(DIRECTORY)
            inbox = wf("inbox", OK, trigger="{type: email, mailbox: 'mailbox:mb_support'}").replace(
                "metadata: {name: inbox}", "metadata: {name: inbox, owner: triage-team@acme.test}")
            commit_files(k.repo, {WF.format("inbox"): inbox}, "inbox", author_email="ines@acme.test")
            commit_files(k.repo, {WF.format("mailer"): wf("mailer", "    - {id: pause, type: wait, duration: 1h}\n" + MAIL),
                                  WF.format("sales"): wf("sales", MAIL.replace("mb_support", "mb_sales")),
                                  WF.format("pager"): wf("pager", POST), WF.format("plain"): wf("plain", OK)},
                         "the rest", author_email="mario@acme.test")
            k.sync()
            waiting = k.engine.start("acme/mailer", {"type": "manual"})
            k.engine.run_until_idle()
            assert k.show(waiting)["status"] == "waiting"

            with k.store.tx() as conn:
                _, suspended = suspension.set_status(conn, config, "acme", "mailbox:mb_support", "disconnected",
                                                         k.clock.now())
            assert suspended == ["acme/inbox", "acme/mailer"]
            with k.store.read() as conn:
                state = {w["id"]: w["suspended"] for w in views.status(conn)["workflows"]}
                audit = [(r.actor, r.action) for r in conn.execute(select(audit_events.c.actor, audit_events.c.action)
                                                                   .where(audit_events.c.action == "suspended"))]
            assert state["acme/inbox"]["reason"] == "mailbox:mb_support is disconnected"
            assert state["acme/sales"] is None and state["acme/pager"] is None and state["acme/plain"] is None
            assert audit == [("controller", "suspended")] * 2

            # Owners (metadata.owner, else the commit's author) are told through the system mailbox.
            assert delivery.deliver_due(k.store, config, k.clock.now()) == 2
            got = sorted((m.rcpt_tos[0], str(m.message["Subject"])) for m in smtp.messages)
            assert got == [("mario@acme.test", "acme/mailer is suspended: mailbox:mb_support is disconnected"),
                           ("triage-team@acme.test", "acme/inbox is suspended: mailbox:mb_support is disconnected")]

            # Nothing new starts; the refusal is on the record's timeline.
            with pytest.raises(GuardError, match="acme/mailer is suspended: mailbox:mb_support is disconnected"):
                k.engine.start("acme/mailer", {"type": "manual"})
            # The execution that was waiting fails at its mail step, naming the mailbox, and sends nothing.
            k.clock.advance(hours=1)
            k.engine.run_until_idle()
            shown = k.show(waiting)
            assert shown["status"] == "failed" and shown["failure"] == "guard"
            assert "mailbox:mb_support is disconnected" in shown["error"]
            assert not (k.data_dir / "outbox" / "acme" / "mb_support").exists()

            # A new version keeps the suspension.
            k.deploy({WF.format("mailer"): wf("mailer", MAIL.replace("subject: hi", "subject: hello"))})
            with k.store.read() as conn:
                assert views.workflow(conn, "acme/mailer")["suspended"] is not None
            with k.store.tx() as conn, pytest.raises(GuardError, match="cannot resume acme/mailer: mailbox:mb_support "
                                                                       "is disconnected"):
                suspension.resume(conn, "acme/mailer", actor="ops", now=k.clock.now())
            with k.store.tx() as conn:
                suspension.set_status(conn, config, "acme", "mailbox:mb_support", "active", k.clock.now())
            with k.store.tx() as conn:
                assert suspension.resume(conn, "acme/mailer", actor="ops", now=k.clock.now())["resumed"]
            assert k.run("acme/mailer")
            with k.store.read() as conn:
                assert views.workflow(conn, "acme/mailer")["suspended"] is None
                assert views.workflow(conn, "acme/inbox")["suspended"] is not None  # each is resumed on its own
            assert [a["status"] for a in all_alerts(k, "suspended") if a["workflow"] == "acme/mailer"] == ["resolved"]


def test_a_channel_removed_from_the_directory_suspends_its_posters(tmp_path: Path, store_url: str) -> None:
    with kit(tmp_path, store_url) as k:
        k.directory(DIRECTORY)
        k.deploy({WF.format("pager"): wf("pager", POST), WF.format("plain"): wf("plain", OK)})
        from controller.model.directory import parse_directory

        without = DIRECTORY.split("channels:")[0]
        with k.store.tx() as conn:
            _, suspended = suspension.replace(conn, Config(), "acme", parse_directory(without, "d.yaml"), k.clock.now())
        assert suspended == ["acme/pager"]
        with k.store.read() as conn:
            assert views.workflow(conn, "acme/pager")["suspended"]["reason"] == "channel:C1 is removed from the directory"


def test_webhook_and_api_for_a_suspended_workflow(tmp_path: Path, store_url: str) -> None:
    from httpkit import http_kit

    with http_kit(tmp_path, store_url) as h:
        h.kit.deploy({"workflows.d/acme/hooked.yaml": wf("hooked", MAIL, trigger="{type: webhook}")})
        from controller.security import secrets

        secrets.ensure_webhook_secrets(h.kit.store, h.box, h.kit.clock.now())
        writer = h.auth(h.token("directory.write"))
        manager = h.auth(h.token("workflow.manage", "workflow.read"))
        changed = h.client.patch("/api/v1/accounts/acme/directory/mailbox/mb_support", json={"status": "deleted"},
                                 headers=writer)
        assert changed.status_code == 200 and "acme/hooked" in changed.json["suspended"]
        refused = h.hook("acme/hooked", {"n": 1})
        assert refused.status_code == 409 and "acme/hooked is suspended" in refused.json["error"]["message"]
        early = h.client.post("/api/v1/workflows/acme/hooked/resume", headers=manager)
        assert early.status_code == 409 and "mailbox:mb_support is deleted" in early.json["error"]["message"]
        h.client.patch("/api/v1/accounts/acme/directory/mailbox/mb_support", json={"status": "active"}, headers=writer)
        resumed = h.client.post("/api/v1/workflows/acme/hooked/resume", headers=manager)
        assert resumed.status_code == 200 and resumed.json["resumed"] is True
        assert h.hook("acme/hooked", {"n": 2}).status_code == 202
        listed = h.client.get("/api/v1/alerts", headers=manager).json["alerts"]
        assert {(a["workflow"], a["kind"], a["status"]) for a in listed} >= {("acme/hooked", "suspended", "resolved")}
        assert h.client.get("/api/v1/alerts?open=true", headers=manager).json["alerts"] == [
            a for a in listed if a["status"] == "open"]


def test_a_failing_sink_is_retried_and_never_blocks(tmp_path: Path, sqlite_url: str, hook_sink: Any) -> None:
    config = configured(tmp_path, sinks(hook_sink.url).replace("webhook, url", "slack, url"))
    with kit(tmp_path, sqlite_url, config=config) as k:
        k.deploy({WF.format("limited"): LIMITED})
        hook_sink.respond("/alerts", status=503)
        burst(k, 25)
        assert delivery.deliver_due(k.store, config, k.clock.now()) == 0
        [row] = deliveries(k)
        assert row["attempts"] == 1 and "503" in row["error"] and row["delivered_at"] is None
        assert delivery.deliver_due(k.store, config, k.clock.now()) == 0  # not due again yet
        hook_sink.respond("/alerts", status=200)
        k.clock.advance(seconds=31)
        assert delivery.deliver_due(k.store, config, k.clock.now()) == 1
        assert hook_sink.requests[-1].json["text"].startswith("*acme/limited dropped 10 trigger(s)")


def test_alert_configuration_mistakes_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="an email alert sink needs notifications.smtp"):
        configured(tmp_path, "alerts:\n  sinks: [{type: email, to: [ops@acme.test]}]\n")
    with pytest.raises(UsageError, match="a slack sink needs url"):
        configured(tmp_path, "alerts:\n  sinks: [{type: slack}]\n")
    policy = configured(tmp_path, "alerts: {cooldown: 2h}\naccounts:\n  globex:\n    alerts: {cooldown: 10m}\n")
    assert policy.alerts("acme").cooldown == 7200 and policy.alerts("globex").cooldown == 600
    assert policy.alerts("globex").drops.threshold == 10


def test_wfctl_alerts_and_resume(tmp_path: Path) -> None:
    from gitutil import make_repo

    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {WF.format("mailer"): wf("mailer", MAIL)}, "add")
    (tmp_path / "acme.yaml").write_text(DIRECTORY)
    base = ["--repo", str(repo), "--data-dir", str(tmp_path / "data"), "--db", f"sqlite:///{tmp_path / 'w.db'}"]

    def wfctl(*args: str) -> Any:
        return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)

    assert wfctl("directory", "load", str(tmp_path / "acme.yaml"), "--account", "acme").exit_code == 0
    assert wfctl("sync").exit_code == 0
    off = wfctl("directory", "set-status", "mailbox:mb_support", "disconnected", "--account", "acme")
    assert "suspended acme/mailer" in off.stdout
    assert "(suspended: mailbox:mb_support is disconnected; `wfctl resume acme/mailer`)" in wfctl("status").stdout
    listed = json.loads(wfctl("alerts", "--open", "--json").stdout)["alerts"]
    assert [(a["workflow"], a["kind"]) for a in listed] == [("acme/mailer", "suspended")]
    early = wfctl("resume", "acme/mailer")
    assert early.exit_code == 3 and early.stderr.startswith("wfctl: error: cannot resume acme/mailer: mailbox:mb_support")
    assert wfctl("directory", "set-status", "mailbox:mb_support", "active", "--account", "acme").exit_code == 0
    done = wfctl("resume", "acme/mailer")
    assert done.exit_code == 0 and done.stdout.startswith("resumed acme/mailer")
    again = wfctl("resume", "acme/mailer")
    assert again.exit_code == 3 and "acme/mailer is not suspended" in again.stderr
    assert "no alerts open" in wfctl("alerts", "--open").stdout
    assert wfctl("run", "acme/mailer", "--wait").exit_code == 0


def test_an_open_suspension_is_notified_again_after_the_repeat_interval(tmp_path: Path, sqlite_url: str,
                                                                         hook_sink: Any) -> None:
    config = configured(tmp_path, sinks(hook_sink.url) + "  repeat: 2h\n")
    with kit(tmp_path, sqlite_url, config=config) as k:
        k.directory(DIRECTORY)
        k.deploy({WF.format("pager"): wf("pager", POST)})
        with k.store.tx() as conn:
            suspension.set_status(conn, config, "acme", "channel:C1", "deactivated", k.clock.now())
        k.clock.advance(hours=1)
        with k.store.tx() as conn:
            assert alerts.remind(conn, config, k.clock.now()) == 0
        k.clock.advance(hours=1)
        with k.store.tx() as conn:
            assert alerts.remind(conn, config, k.clock.now()) == 1
        [alert] = all_alerts(k, "suspended")
        assert alert["notifications"] == 2 and len(deliveries(k)) == 2
        assert delivery.deliver_due(k.store, config, k.clock.now()) == 2
        assert hook_sink.requests[-1].json["subject"].startswith("still open since ")


@pytest.mark.parametrize("kind", ["record", "inactivity", "email", "schedule", "webhook", "manual", "call", "retry"])
def test_a_suspended_workflow_starts_nothing_whatever_the_trigger(two: Any, kind: str) -> None:  # noqa: F811
    """Every way in (the eight kinds of test_admission, through their real paths) meets the suspension."""
    from test_admission import KINDS

    from controller.engine.starting import start_now
    from controller.store.tables import workflow_suspensions, workflows

    key, fire = KINDS[kind]
    if kind == "retry":
        fire(two, two.k.engine, 0)  # the failed execution, before the suspension
    with two.k.store.tx() as conn:
        workflow_id = conn.execute(select(workflows.c.id).where(workflows.c.key == key)).scalar_one()
        conn.execute(workflow_suspensions.insert().values(workflow_id=workflow_id, ref="mailbox:mb_support",
                                                          reason="mailbox:mb_support is disconnected",
                                                          since=two.k.clock.now()))
    before = two.count(key)
    if kind == "call":
        parent = start_now(two.k.engine, "acme/caller")
        two.k.engine.run_until_idle()
        assert "the call of acme/callee was refused: acme/callee is suspended" in two.k.show(parent)["error"]
    else:
        try:
            assert fire(two, two.k.engine, 1) is False
        except GuardError as e:
            assert f"{key} is suspended: mailbox:mb_support is disconnected" in str(e)
    assert two.count(key) == before
    with two.k.store.read() as conn:
        reasons = list(conn.execute(select(trigger_decisions.c.reason).where(
            trigger_decisions.c.workflow_key == key, trigger_decisions.c.decision == "refused")).scalars())
    assert reasons and all("is suspended" in r for r in reasons)


def test_directory_load_and_put_suspend_too(tmp_path: Path, sqlite_url: str) -> None:
    """The two ways to replace a directory (`wfctl directory load`, PUT …/directory) suspend like set-status."""
    from httpkit import http_kit

    with http_kit(tmp_path, sqlite_url) as h:
        writer = h.auth(h.token("directory.write"))
        without_support = {"users": [{"id": "u_alice", "name": "Alice", "email": "alice@acme.test"}],
                           "mailboxes": [], "channels": [{"id": "C1", "name": "oncall",
                                                          "webhook_url": "http://127.0.0.1:9/hook"}]}
        put = h.client.put("/api/v1/accounts/acme/directory", json=without_support, headers=writer)
        assert put.status_code == 200 and put.json["suspended"] == ["acme/inbox"]
    repo = tmp_path / "cli"
    from gitutil import make_repo

    commit_files(make_repo(repo), {WF.format("pager"): wf("pager", POST)}, "add")
    base = ["--repo", str(repo), "--data-dir", str(tmp_path / "d"), "--db", f"sqlite:///{tmp_path / 'c.db'}"]
    (tmp_path / "full.yaml").write_text(DIRECTORY)
    (tmp_path / "none.yaml").write_text(DIRECTORY.split("channels:")[0])
    runner = CliRunner()
    assert runner.invoke(cli, [*base, "directory", "load", str(tmp_path / "full.yaml"), "--account", "acme"]).exit_code == 0
    assert runner.invoke(cli, [*base, "sync"]).exit_code == 0
    loaded = runner.invoke(cli, [*base, "directory", "load", str(tmp_path / "none.yaml"), "--account", "acme"])
    assert loaded.exit_code == 0 and "suspended acme/pager" in loaded.stdout
