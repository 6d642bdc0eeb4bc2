"""Admission, the one way in: every trigger kind meets the same guards, ``when`` and rate limit.

Each kind is driven through its real entry point (record writes, the inactivity scan, mail delivery,
the schedule jobs, signed webhook intake, manual runs, ``workflow.call`` and retries) by two engines
over one database, each with its own connection pool as two processes would have, on SQLite and
PostgreSQL, with a shared manual clock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from enginekit import Kit, kit
from gitutil import commit_files, make_repo

from controller.cli import cli
from controller.config import load_config
from controller.engine.records import RecordService
from controller.engine.runtime import Engine
from controller.engine.scheduler import Schedules
from controller.engine.starting import start_now
from controller.engine.triggers import email, inactivity
from controller.errors import GuardError, RateLimited
from controller.security import secrets
from controller.security.intake import WebhookIntake
from controller.security.signing import sign
from controller.service import Controller, ServeOptions
from controller.store import Store, decisions, open_store, views
from controller.store.tables import trigger_decisions

WF = "workflows.d/acme/{}.yaml"
LIMIT = "  rateLimit: {max: 2, per: 1h}\n"
SET = "    - {id: note, type: set, vars: {kind: '{{ trigger.type }}'}}\n"
FAIL = "    - {id: boom, type: set, vars: {x: '{{ trigger.nope }}'}}\n"


def wf(name: str, trigger: str, actions: str = SET, *, limit: str = LIMIT, enabled: bool = True) -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n"
            f"  enabled: {'true' if enabled else 'false'}\n  trigger: {trigger}\n{limit}  actions:\n{actions}")


WORKFLOWS = {
    "on-ticket": wf("on-ticket", "{type: record, entity: ticket, events: [created, updated], "
                                 "when: \"{{ record.priority == 'urgent' }}\"}"),
    "quiet": wf("quiet", "{type: inactivity, entity: lead, after: 15m}"),
    "inbox": wf("inbox", "{type: email, mailbox: 'mailbox:mb_support'}"),
    "tick": wf("tick", "{type: schedule, every: 5m}"),
    "hook": wf("hook", "{type: webhook}"),
    "hand": wf("hand", "{type: manual, entities: [ticket]}"),
    "callee": wf("callee", "{type: manual, entities: [ticket]}"),
    "caller": wf("caller", "{type: manual, entities: [ticket]}",
                 "    - {id: ask, type: workflow.call, workflow: callee}\n", limit=""),
    "flaky": wf("flaky", "{type: manual, entities: [ticket]}", FAIL),
    "unlimited": wf("unlimited", "{type: manual, entities: [ticket]}", limit=""),
    "off": wf("off", "{type: record, entity: ticket, events: [created]}", enabled=False, limit=""),
}


@dataclass
class Two:
    """Two engines over one store (separate pools, one clock), as two `wfctl serve` processes."""

    k: Kit
    other: Engine
    other_store: Store
    box: secrets.SecretBox

    def engines(self) -> Iterator[Engine]:
        while True:
            yield self.k.engine
            yield self.other

    def dropped(self, key: str) -> int:
        with self.k.store.read() as conn:
            return int(views.workflow(conn, key)["dropped"])

    def count(self, key: str) -> int:
        with self.k.store.read() as conn:
            return len(views.executions_list(conn, workflow=key, limit=1000))


@pytest.fixture
def two(tmp_path: Path, store_url: str) -> Iterator[Two]:
    with kit(tmp_path, store_url) as k:
        k.directory()
        k.deploy({WF.format(name): text for name, text in WORKFLOWS.items()})
        store = open_store(store_url)
        box = secrets.SecretBox(Fernet.generate_key().decode())
        try:
            yield Two(k, Engine(store, data_dir=k.data_dir, clock=k.clock), store, box)
        finally:
            store.close()


def record_trigger(two: Two, engine: Engine, n: int) -> bool:
    service = RecordService(engine)
    service.create("acme", "ticket", {"title": f"t{n}", "priority": "urgent"})
    return bool(service.started)


def inactivity_trigger(two: Two, engine: Engine, n: int) -> bool:
    RecordService(engine).create("acme", "lead", {"name": f"lead {n}"})
    two.k.clock.advance(minutes=16)
    with engine.store.tx() as conn:
        return bool(inactivity.scan(engine, conn))


def email_trigger(two: Two, engine: Engine, n: int) -> bool:
    raw = f"From: a@customer.test\r\nTo: support@acme.test\r\nSubject: mail {n}\r\n\r\nHello\r\n".encode()
    with engine.store.tx() as conn:
        return bool(email.deliver(engine, conn, "acme", "mailbox:mb_support", raw))


def schedule_trigger(two: Two, engine: Engine, n: int) -> bool:
    schedules = Schedules(engine)
    schedules.start(paused=True)  # this engine's process registers the job (as after a failover)
    try:
        before = two.count("acme/tick")
        two.k.clock.advance(minutes=5)
        assert schedules.run_due(two.k.clock.now()) == 1
        return two.count("acme/tick") > before
    finally:
        schedules.shutdown()


def webhook_trigger(two: Two, engine: Engine, n: int) -> bool:
    with engine.store.tx() as conn:
        secrets.ensure_secrets(conn, two.box, ["acme/hook"], two.k.clock.now())
        secret = secrets.rotate(conn, two.box, "acme/hook", actor="test", now=two.k.clock.now()).secret
    body = json.dumps({"n": n}).encode()
    at = int(two.k.clock.now().timestamp())
    try:
        WebhookIntake(engine, two.box).receive("acme/hook", timestamp=str(at), signature=sign(secret, at, body),
                                               body=body)
    except RateLimited:
        return False
    return True


def manual_trigger(two: Two, engine: Engine, n: int) -> bool:
    ticket = RecordService(engine).create("acme", "ticket", {"title": f"m{n}"})
    try:
        start_now(engine, "acme/hand", record=("ticket", ticket["id"]))
    except RateLimited:
        return False
    return True


def call_trigger(two: Two, engine: Engine, n: int) -> bool:
    parent = start_now(engine, "acme/caller")
    engine.run_until_idle()
    shown = two.k.show(parent)
    if shown["status"] == "failed":
        assert "the call of acme/callee was dropped: acme/callee is over its rate limit (2 per 1h)" in shown["error"]
        return False
    assert shown["status"] == "succeeded", shown
    return True


def retry_trigger(two: Two, engine: Engine, n: int) -> bool:
    if n == 0:  # the failed execution that is retried is the first of the budget
        failed = start_now(engine, "acme/flaky")
        engine.run_until_idle()
        assert two.k.show(failed)["status"] == "failed"
        return True
    first = min(e["id"] for e in views_list(two, "acme/flaky"))
    try:
        engine.retry(first)
    except RateLimited:
        return False
    return True


def views_list(two: Two, key: str) -> list[dict[str, Any]]:
    with two.k.store.read() as conn:
        return views.executions_list(conn, workflow=key, limit=1000)


KINDS: dict[str, tuple[str, Callable[[Two, Engine, int], bool]]] = {
    "record": ("acme/on-ticket", record_trigger),
    "inactivity": ("acme/quiet", inactivity_trigger),
    "email": ("acme/inbox", email_trigger),
    "schedule": ("acme/tick", schedule_trigger),
    "webhook": ("acme/hook", webhook_trigger),
    "manual": ("acme/hand", manual_trigger),
    "call": ("acme/callee", call_trigger),
    "retry": ("acme/flaky", retry_trigger),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_trigger_kind_is_held_to_the_rate_limit_across_two_engines(two: Two, kind: str) -> None:
    """rateLimit {max: 2, per: 1h}: two triggers start, the third and fourth are dropped and counted, whichever
    engine takes them; an hour after the first, one starts again."""
    key, fire = KINDS[kind]
    engines = two.engines()
    outcomes = [fire(two, next(engines), n) for n in range(4)]
    assert outcomes == [True, True, False, False]
    assert two.dropped(key) == 2
    two.k.clock.advance(hours=1)
    assert fire(two, next(engines), 4) is True
    assert two.dropped(key) == 2


def test_a_workflow_without_a_rate_limit_takes_the_account_default(two: Two, tmp_path: Path) -> None:
    """`limits.rateLimit` in the configuration: per account over the global default; spec.rateLimit wins."""
    config = tmp_path / "config.yaml"
    config.write_text("limits:\n  rateLimit: {max: 5, per: 1h}\naccounts:\n  acme:\n"
                      "    limits: {rateLimit: {max: 1, per: 1h}}\n")
    engine = Engine(two.other_store, data_dir=two.k.data_dir, clock=two.k.clock, config=load_config(config))
    start_now(engine, "acme/unlimited")
    with pytest.raises(RateLimited, match=r"^acme/unlimited is over its rate limit \(1 per 1h\); the trigger was "
                                          r"dropped and counted$"):
        start_now(engine, "acme/unlimited")
    assert [start_now(engine, "acme/hand"), start_now(engine, "acme/hand")]  # its own 2 per 1h wins over 1
    assert load_config(config).rate_limit("globex") == {"max": 5, "per": "1h"}


def test_a_bad_limit_in_the_configuration_is_a_clear_error(tmp_path: Path) -> None:
    """A rate limit with a bad duration or max is refused when the configuration is read."""
    from controller.errors import UsageError

    config = tmp_path / "config.yaml"
    config.write_text("limits:\n  rateLimit: {max: 0, per: soon}\n")
    with pytest.raises(UsageError, match=r"config.yaml:2:15: limits.rateLimit.max: must be at least 1 \(and 1 more\)"):
        load_config(config)


# -- the timeline ---------------------------------------------------------------------------------


def timeline(two: Two, ref: tuple[str, str]) -> list[dict[str, Any]]:
    with two.k.store.read() as conn:
        return decisions.record_timeline(conn, "acme", *ref)


def test_the_timeline_of_a_record_shows_every_decision_newest_first(two: Two) -> None:
    """Started (with the execution), filtered by `when`, dropped by the rate limit, refused as disabled."""
    service = RecordService(two.k.engine)
    ticket = service.create("acme", "ticket", {"title": "VPN", "priority": "urgent"})
    ref = ("ticket", ticket["id"])
    started = service.started
    service.update("acme", "ticket", ticket["id"], {"priority": "low"})
    service.update("acme", "ticket", ticket["id"], {"priority": "urgent"})
    service.update("acme", "ticket", ticket["id"], {"title": "VPN down"})  # the third urgent one in the hour
    rows = timeline(two, ref)
    assert [(r["workflow"], r["trigger"], r["decision"]) for r in rows] == [
        ("acme/on-ticket", "record", "dropped"),
        ("acme/on-ticket", "record", "started"),
        ("acme/on-ticket", "record", "filtered"),
        ("acme/on-ticket", "record", "started"),
        ("acme/off", "record", "refused"),
    ]
    assert set(rows[0]) == {"at", "workflow", "version", "trigger", "decision", "reason", "execution_id"}
    assert rows[0]["reason"] == "acme/on-ticket is over its rate limit (2 per 1h); the trigger was dropped and counted"
    assert rows[0]["execution_id"] is None and rows[0]["version"] == 1
    assert rows[2]["reason"] == "when \"{{ record.priority == 'urgent' }}\" is false"
    assert rows[4]["reason"] == "acme/off is disabled (spec.enabled: false); enable it in git to run it"
    assert rows[3]["execution_id"] == started[0]


def test_a_manual_run_and_a_held_trigger_are_on_the_timeline(two: Two) -> None:
    """A run on a record is a decision about it; a trigger held behind a restore says so."""
    ticket = RecordService(two.k.engine).create("acme", "ticket", {"title": "x"})
    execution = start_now(two.k.engine, "acme/hand", record=("ticket", ticket["id"]))
    with two.k.store.tx() as conn:
        from sqlalchemy import update

        from controller.store.tables import workflows
        conn.execute(update(workflows).where(workflows.c.key == "acme/hand").values(sync="Blocked"))
    held = start_now(two.k.engine, "acme/hand", record=("ticket", ticket["id"]))
    rows = timeline(two, ("ticket", ticket["id"]))
    assert [(r["trigger"], r["decision"], r["execution_id"]) for r in rows[:2]] == [
        ("manual", "started", held), ("manual", "started", execution)]
    assert rows[0]["reason"].startswith("held: a restore of the workflow waits")


def synced_cli(tmp_path: Path, *names: str) -> Callable[..., Any]:
    """`wfctl` (through click, in this process) over a new repository of these workflows, synced."""
    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {WF.format(name): WORKFLOWS[name] for name in names}, "add")
    base = ["--repo", str(repo), "--data-dir", str(tmp_path / "data"), "--db", f"sqlite:///{tmp_path / 'w.db'}"]

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)

    assert run("sync").exit_code == 0
    return run


def test_the_timeline_command(tmp_path: Path) -> None:
    """`wfctl records timeline TYPE:ID --account A [--json]`: newest first; an unknown record is exit 2."""
    run = synced_cli(tmp_path, "on-ticket")
    created = run("records", "create", "ticket", "--account", "acme", "--data", '{"priority": "low"}')
    record_id = json.loads(created.stdout)["record"]["id"]
    shown = run("records", "timeline", f"ticket:{record_id}", "--account", "acme", "--json")
    assert shown.exit_code == 0 and [r["decision"] for r in json.loads(shown.stdout)] == ["filtered"]
    text = run("records", "timeline", f"ticket:{record_id}", "--account", "acme")
    assert "acme/on-ticket v1  record     filtered  when" in text.stdout
    unknown = run("records", "timeline", "ticket:999", "--account", "acme")
    assert unknown.exit_code == 2 and unknown.stderr.startswith("wfctl: error: no record ticket:999")
    assert len(unknown.stderr.strip().splitlines()) == 1


def test_the_timeline_over_http(tmp_path: Path, store_url: str) -> None:
    """GET /api/v1/accounts/<a>/records/<type>/<id>/timeline, needing workflow.read; 404 for an unknown record."""
    from httpkit import http_kit

    with http_kit(tmp_path, store_url) as http:
        writer = http.auth(http.token("records.write"))
        reader = http.auth(http.token("workflow.read"))
        made = http.client.post("/api/v1/accounts/acme/records/ticket", json={"title": "t"}, headers=writer)
        record_id = made.json["record"]["id"]
        answer = http.client.get(f"/api/v1/accounts/acme/records/ticket/{record_id}/timeline", headers=reader)
        assert answer.status_code == 200
        assert [(d["workflow"], d["decision"]) for d in answer.json["decisions"]] == [("acme/on-ticket", "started")]
        assert http.client.get(f"/api/v1/accounts/acme/records/ticket/{record_id}/timeline",
                               headers=writer).status_code == 403
        missing = http.client.get("/api/v1/accounts/acme/records/ticket/9999/timeline", headers=reader)
        assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"


def test_webhook_and_schedule_refusals_are_kept_by_workflow(two: Two) -> None:
    """Triggers not about a record keep only their drops and refusals, keyed by the workflow."""
    for n in range(3):
        webhook_trigger(two, two.k.engine, n)
    with two.k.store.read() as conn:
        from sqlalchemy import select

        rows = conn.execute(select(trigger_decisions.c.workflow_key, trigger_decisions.c.decision,
                                   trigger_decisions.c.record_type)).all()
    assert [tuple(r) for r in rows] == [("acme/hook", "dropped", None)]


def test_old_decisions_are_purged_by_the_serve_loop(two: Two) -> None:
    """Decisions older than the retention are forgotten; younger ones stay."""
    from controller.reconcile.reconciler import Reconciler
    from controller.source import GitSource

    service = RecordService(two.k.engine)
    old = service.create("acme", "ticket", {"priority": "low"})
    two.k.clock.advance(days=6)
    young = service.create("acme", "ticket", {"priority": "low"})
    two.k.clock.advance(days=1, seconds=1)
    with GitSource(str(two.k.path), data_dir=two.k.data_dir) as source:
        controller = Controller(Reconciler(source, two.k.store), two.k.engine, ServeOptions())
        assert controller.leadership.held()  # the purge is the leader's
        assert controller.purge() == 2  # the old ticket's: filtered by on-ticket, refused by off
        assert controller.purge() == 0  # not again before purge_every
    assert [r["decision"] for r in timeline(two, ("ticket", young["id"]))] == ["filtered", "refused"]
    assert timeline(two, ("ticket", old["id"])) == []  # known to the record store: an empty timeline


def test_drops_are_logged_once_a_minute_per_workflow(two: Two, caplog: pytest.LogCaptureFixture) -> None:
    """A burst of drops is one log line; the next, a minute later, says how many were dropped meanwhile."""
    service = RecordService(two.k.engine)
    with caplog.at_level(logging.WARNING, logger="controller.engine.admission"):
        for n in range(6):
            service.create("acme", "ticket", {"title": f"t{n}", "priority": "urgent"})
        two.k.clock.advance(seconds=61)
        service.create("acme", "ticket", {"title": "late", "priority": "urgent"})
    lines = [r.getMessage() for r in caplog.records if "over its rate limit" in r.getMessage()]
    report = "acme/on-ticket is over its rate limit (2 per 1h): dropped {} trigger(s) (record) since the last report"
    assert lines == [report.format(1), report.format(4)]


def test_explicit_callers_get_the_verdict_as_their_error(two: Two) -> None:
    """Unknown is NotFoundError (exit 2, 404); disabled is a GuardError (exit 3, 409), noted for the workflow."""
    from controller.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no workflow 'acme/nope'"):
        start_now(two.k.engine, "acme/nope")
    with pytest.raises(GuardError, match="acme/off is disabled"):
        start_now(two.k.engine, "acme/off")
    with two.k.store.read() as conn:
        from sqlalchemy import select

        kept = conn.execute(select(trigger_decisions.c.workflow_key, trigger_decisions.c.decision)).all()
    assert [tuple(r) for r in kept] == [("acme/off", "refused")]


def test_the_cli_maps_a_drop_to_exit_3_with_one_line(tmp_path: Path) -> None:
    """`wfctl run` and `wfctl executions retry` over the budget: exit 3, the contract's sentence."""
    run = synced_cli(tmp_path, "flaky")
    first = run("run", "acme/flaky", "--wait")
    assert first.exit_code == 1
    assert run("executions", "retry", "1").exit_code == 0
    expected = "wfctl: error: acme/flaky is over its rate limit (2 per 1h); the trigger was dropped and counted\n"
    for args in (("run", "acme/flaky"), ("executions", "retry", "1")):
        over = run(*args)
        assert (over.exit_code, over.stderr) == (3, expected)
    store = open_store(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        with store.read() as conn:
            assert views.workflow(conn, "acme/flaky")["dropped"] == 2
    finally:
        store.close()


def test_racing_engines_never_admit_more_than_the_budget(two: Two) -> None:
    """Two engines, four threads, 24 urgent tickets at once against max 2 per 1h: exactly 2 start, 22 drop."""
    import threading

    barrier = threading.Barrier(4)
    started: list[int] = []
    lock = threading.Lock()

    def write(engine: Engine, n: int) -> None:
        service = RecordService(engine)
        barrier.wait()
        for i in range(6):
            service.create("acme", "ticket", {"title": f"{n}-{i}", "priority": "urgent"})
        with lock:
            started.extend(service.started)

    threads = [threading.Thread(target=write, args=(engine, n))
               for n, engine in enumerate([two.k.engine, two.other, two.k.engine, two.other])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(started) == 2 and two.count("acme/on-ticket") == 2
    assert two.dropped("acme/on-ticket") == 22


def test_separate_wfctl_processes_share_the_budget(tmp_path: Path) -> None:
    """Three `wfctl records create` processes in a row: the budget is in the store, so the third is dropped."""
    import subprocess
    import sys

    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {WF.format("on-ticket"): WORKFLOWS["on-ticket"]}, "add")
    base = [sys.executable, "-m", "controller", "--repo", str(repo), "--data-dir", str(tmp_path / "data"),
            "--db", f"sqlite:///{tmp_path / 'w.db'}"]
    assert subprocess.run([*base, "sync"], check=False, capture_output=True, timeout=60).returncode == 0
    runs = [subprocess.run([*base, "records", "create", "ticket", "--account", "acme", "--data",
                            json.dumps({"title": f"t{n}", "priority": "urgent"})],
                           check=False, capture_output=True, text=True, timeout=60) for n in range(3)]
    assert [r.returncode for r in runs] == [0, 0, 0]
    assert [len(json.loads(r.stdout)["executions"]) for r in runs] == [1, 1, 0]
    timeline = subprocess.run([*base, "records", "timeline", "ticket:3", "--account", "acme", "--json"],
                              check=False, capture_output=True, text=True, timeout=60)
    assert [d["decision"] for d in json.loads(timeline.stdout)] == ["dropped"]


def test_api_runs_over_the_budget_are_429(tmp_path: Path, store_url: str) -> None:
    """POST …/run draws on the same budget as the webhooks: the third in a minute is 429 with Retry-After."""
    from httpkit import http_kit

    with http_kit(tmp_path, store_url) as http:
        token = http.auth(http.token("workflow.run_manual", "workflow.read"))
        assert http.hook("acme/limited", {"n": 1}).status_code == 202
        assert http.client.post("/api/v1/workflows/acme/limited/run", headers=token).status_code == 202
        refused = http.client.post("/api/v1/workflows/acme/limited/run", headers=token)
        assert refused.status_code == 429 and refused.json["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) == 60
        assert http.client.get("/api/v1/workflows/acme/limited", headers=token).json["dropped"] == 1
        assert http.hook("acme/limited", {"n": 2}).status_code == 429  # and webhooks see it full too
