"""Metrics: rollups written by the lifecycle hook, read through windows, per version and per account.

Every figure is checked against executions made through the real engine, on SQLite and
PostgreSQL, with the manual clock moved across the window edges (no sleeping).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from enginekit import Kit, kit
from servers import http_server
from sqlalchemy import func, select

from controller.config import Config
from controller.engine.records import RecordService
from controller.errors import RateLimited
from controller.metrics import rollup, windows
from controller.metrics.windows import figures, percentile
from controller.model.statuses import Failure
from controller.reconcile.reconciler import Reconciler
from controller.service import Controller, ServeOptions
from controller.source import GitSource
from controller.store import directory as store_directory
from controller.store import retention
from controller.store.tables import DURATION_BOUNDS, HISTOGRAM, executions, metric_buckets

WF = "workflows.d/acme/{}.yaml"


def wf(name: str, actions: str, *, trigger: str = "{type: manual, entities: [ticket]}", extra: str = "") -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  trigger: {trigger}\n"
            f"{extra}  actions:\n{actions}")


OK = "    - {id: note, type: set, vars: {n: 1}}\n"
BROKEN = "    - {id: note, type: set, vars: {n: '{{ trigger.nothing.here }}'}}\n"


@pytest.fixture
def k(tmp_path: Path, store_url: str) -> Iterator[Kit]:
    with kit(tmp_path, store_url) as found:
        found.directory()
        yield found


def metrics(k: Kit, key: str, window: str = "24h", **options: Any) -> dict[str, Any]:
    with k.store.read() as conn:
        return windows.workflow_metrics(conn, key, window, k.clock.now(), **options)


def test_window_edges_an_execution_25_hours_ago_is_in_7d_not_in_24h(k: Kit) -> None:
    """24h reads the current hour and the 23 before; the previous window is the 24 before those."""
    k.deploy({WF.format("x"): wf("x", OK)})
    k.run("acme/x")  # Jan 5, 09:00
    k.clock.advance(hours=2)
    k.run("acme/x")  # Jan 5, 11:00
    k.run("acme/x")
    k.clock.advance(hours=23)  # Jan 6, 10:00: the first is 25 h ago, the others 23 h ago

    day = metrics(k, "acme/x", "24h")
    assert (day["from"], day["to"]) == ("2026-01-05T11:00:00+00:00", "2026-01-06T11:00:00+00:00")
    assert day["previous_from"] == "2026-01-04T11:00:00+00:00"
    assert day["current"]["executions"] == 2
    assert day["delta"]["executions"] == 1  # the one 25 h ago is in the previous window
    k.clock.advance(hours=1)  # Jan 6, 11:00: the two are 24 h ago, out of the current hour and the 23 before it
    later = metrics(k, "acme/x", "24h")
    assert later["current"]["executions"] == 0 and later["previous"]["executions"] == 3
    week = metrics(k, "acme/x", "7d")
    assert week["current"]["executions"] == 3 and week["previous"]["executions"] == 0
    k.clock.advance(days=7)  # 8 days later: in the previous 7 days, out of the current ones
    week = metrics(k, "acme/x", "7d")
    assert (week["current"]["executions"], week["previous"]["executions"]) == (0, 3)
    month = metrics(k, "acme/x", "30d")
    assert month["current"]["executions"] == 3


def test_success_rate_durations_and_waiting_apart_from_active_time(k: Kit) -> None:
    k.deploy({WF.format("nap"): wf("nap", "    - {id: first, type: set, vars: {n: 1}}\n"
                                           "    - {id: pause, type: wait, duration: 1h}\n"),
              WF.format("flaky"): wf("flaky", "    - {id: note, type: set, vars: {n: '{{ trigger.n + 1 }}'}}\n")})
    napping = k.run("acme/nap")
    k.clock.advance(hours=1)
    k.engine.run_until_idle()
    assert k.show(napping)["status"] == "succeeded"
    for n in (1, 2, 3):
        k.engine.start("acme/flaky", {"type": "manual", "n": n})
    k.engine.start("acme/flaky", {"type": "manual"})  # trigger.n undefined: a template failure
    k.engine.run_until_idle()

    nap = metrics(k, "acme/nap")["current"]
    assert nap["executions"] == 1 and nap["success_rate"] == 1.0
    assert nap["avg_wait_seconds"] == 3600.0  # the wait, not work
    assert nap["avg_active_seconds"] == 0.0 and nap["p95_active_seconds"] is not None
    assert nap["p95_active_seconds"] <= DURATION_BOUNDS[0]
    assert nap["max_duration_seconds"] == 3600.0
    assert [a["action"] for a in nap["slowest_actions"]] == ["first"]  # a wait is slow on purpose: not ranked
    flaky = metrics(k, "acme/flaky")["current"]
    assert (flaky["executions"], flaky["succeeded"], flaky["failed"]) == (4, 3, 1)
    assert flaky["success_rate"] == 0.75
    assert flaky["failures"] == {"template": 1}
    assert flaky["failing_actions"] == [{"action": "note", "type": "set", "count": 4, "failures": 1,
                                         "avg_seconds": 0.0, "max_seconds": 0.0, "failure_rate": 0.25}]


def test_failure_classes_come_from_the_error_not_its_text(k: Kit) -> None:
    """template, http_4xx, http_5xx, timeout, network, smtp, guard, action, call and cancelled, each counted."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused
    with http_server() as web, socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        web.respond("/missing", status=404)
        web.respond("/down", status=503)

        def call(url: str, extra: str = "") -> str:
            return f"    - {{id: call, type: http.request, method: GET, url: '{url}'{extra}}}\n"

        k.directory(k_directory(smtp_port=closed_port))
        k.deploy({
            WF.format("child"): wf("child", BROKEN),
            WF.format("t"): wf("t", BROKEN),
            WF.format("h4"): wf("h4", call(web.url + "/missing")),
            WF.format("h5"): wf("h5", call(web.url + "/down")),
            WF.format("slow"): wf("slow", call(f"http://127.0.0.1:{silent.getsockname()[1]}/", ", timeout: 1s")),
            WF.format("refused"): wf("refused", call(f"http://127.0.0.1:{closed_port}/")),
            WF.format("mail"): wf("mail", "    - {id: tell, type: email.send, mailbox: 'mailbox:mb_smtp', "
                                          "to: a@acme.test, subject: hi, body: hi}\n"),
            WF.format("gone"): wf("gone", "    - {id: tell, type: email.send, mailbox: 'mailbox:mb_gone', "
                                          "to: a@acme.test, subject: hi, body: hi}\n"),
            WF.format("bad"): wf("bad", "    - {id: make, type: record.update, entity: ticket, record_id: '999', "
                                        "set: {a: 1}}\n"),
            WF.format("parent"): wf("parent", "    - {id: ask, type: workflow.call, workflow: child}\n"),
            WF.format("nap"): wf("nap", "    - {id: pause, type: wait, duration: 1d}\n"),
        })
        with k.store.tx() as conn:  # deactivated after the sync checked the reference: the step meets it
            store_directory.set_status(conn, "acme", "mailbox:mb_gone", "deactivated", k.clock.now())
        for name in ("t", "h4", "h5", "slow", "refused", "mail", "gone", "bad", "parent", "nap"):
            k.engine.start(f"acme/{name}", {"type": "manual"})
        k.engine.run_until_idle()
    napping = next(e["id"] for e in _executions(k) if e["workflow_key"] == "acme/nap")
    k.engine.cancel(napping)

    expected = {"t": "template", "h4": "http_4xx", "h5": "http_5xx", "slow": "timeout", "refused": "network",
                "mail": "smtp", "gone": "guard", "bad": "action", "parent": "call", "nap": "cancelled"}
    found = {name: metrics(k, f"acme/{name}")["current"]["failures"] for name in expected}
    assert found == {name: {kind: 1} for name, kind in expected.items()}
    assert set(expected.values()) <= {f.value for f in Failure}
    assert metrics(k, "acme/nap")["current"]["terminated"] == 1


def k_directory(*, smtp_port: int) -> str:
    return f"""
users:
  - {{id: u_alice, name: Alice, email: alice@acme.test, permissions: [workflow.run_manual]}}
mailboxes:
  - {{id: mb_smtp, name: Smtp, address: smtp@acme.test, kind: smtp, smtp: {{host: 127.0.0.1, port: {smtp_port}}}}}
  - {{id: mb_gone, name: Gone, address: gone@acme.test, kind: outbox}}
"""


def _executions(k: Kit) -> list[dict[str, Any]]:
    with k.store.read() as conn:
        return [dict(r) for r in conn.execute(select(executions)).mappings()]


def test_by_version_across_a_real_commit_says_what_the_change_did(k: Kit) -> None:
    k.deploy({WF.format("x"): wf("x", OK)}, "first version")
    for _ in range(4):
        k.run("acme/x")
    k.clock.advance(hours=1)
    k.deploy({WF.format("x"): wf("x", BROKEN)}, "read trigger.nothing")
    for _ in range(2):
        k.run("acme/x")
    k.run("acme/x")

    found = metrics(k, "acme/x", "24h", by_version=True)
    heads = [c.hexsha for c in k.repo.iter_commits()]
    v2, v1 = found["versions"]
    assert (v2["version"], v2["executions"], v2["success_rate"], v2["summary"]) == (2, 3, 0.0, "read trigger.nothing")
    assert (v1["version"], v1["executions"], v1["success_rate"], v1["summary"]) == (1, 4, 1.0, "first version")
    assert v2["commit"] == heads[0] and v1["commit"] == heads[1]
    assert v2["author"] and v2["failures"] == {"template": 3}
    assert found["changes"] == [f"since v2 (commit {heads[0][:7]}) the success rate fell from 100.0% to 0.0%"]
    assert found["current"]["executions"] == 7
    plain = metrics(k, "acme/x", "24h")
    assert (found["current"], found["previous"]) == (plain["current"], plain["previous"])  # the split sums back


def test_drops_refusals_and_filters_are_counted_in_the_same_buckets(k: Kit) -> None:
    k.deploy({WF.format("limited"): wf("limited", BROKEN, extra="  rateLimit: {max: 1, per: 1h}\n"),
              WF.format("urgent"): wf("urgent", OK, trigger="{type: record, entity: ticket, events: [created], "
                                                            "when: \"{{ record.priority == 'urgent' }}\"}"),
              WF.format("off"): wf("off", OK).replace("spec:\n", "spec:\n  enabled: false\n")})
    failed = k.run("acme/limited")
    with pytest.raises(RateLimited):
        k.engine.start("acme/limited", {"type": "manual"})
    with pytest.raises(RateLimited):
        k.engine.retry(failed)
    with pytest.raises(Exception, match="disabled"):
        k.engine.start("acme/off", {"type": "manual"})
    records = RecordService(k.engine)
    for priority in ("low", "urgent", "low"):
        records.create("acme", "ticket", {"priority": priority})
    k.engine.run_until_idle()

    assert metrics(k, "acme/limited")["current"]["dropped"] == 2
    assert metrics(k, "acme/off")["current"]["refused"] == 1
    urgent = metrics(k, "acme/urgent")["current"]
    assert (urgent["executions"], urgent["filtered"]) == (1, 2)


def test_account_overview_ranks_the_worst_with_a_minimum_count(k: Kit) -> None:
    k.deploy({WF.format("good"): wf("good", OK), WF.format("bad"): wf("bad", BROKEN),
              WF.format("once"): wf("once", BROKEN),
              WF.format("half"): wf("half", "    - {id: note, type: set, vars: {n: '{{ trigger.n + 1 }}'}}\n"),
              WF.format("limited"): wf("limited", OK, extra="  rateLimit: {max: 1, per: 1d}\n")})
    for i in range(10):
        k.engine.start("acme/good", {"type": "manual"})
        k.engine.start("acme/bad", {"type": "manual"})
        k.engine.start("acme/half", {"type": "manual", **({"n": i} if i % 2 else {})})
    k.engine.start("acme/once", {"type": "manual"})  # one failure: below the minimum, not ranked
    k.engine.start("acme/limited", {"type": "manual"})
    for _ in range(3):
        with pytest.raises(RateLimited):
            k.engine.start("acme/limited", {"type": "manual"})
    k.engine.run_until_idle()

    with k.store.read() as conn:
        found = windows.account_metrics(conn, "acme", "7d", k.clock.now())
    assert [r["workflow"] for r in found["worst"]] == ["acme/bad", "acme/half"]
    assert found["worst"][0]["success_rate"] == 0.0 and found["worst"][1]["success_rate"] == 0.5
    assert found["worst"][0]["delta"]["executions"] == 10  # nothing in the week before
    assert [r["workflow"] for r in found["most_dropped"]] == ["acme/limited"]
    assert found["most_dropped"][0]["dropped"] == 3
    assert found["totals"]["executions"] == 32 and found["totals"]["dropped"] == 3
    assert {r["workflow"] for r in found["slowest"]} == {"acme/good", "acme/bad", "acme/half"}
    with k.store.read() as conn:
        low = windows.account_metrics(conn, "acme", "7d", k.clock.now(), min_executions=1)
    assert [r["workflow"] for r in low["worst"]] == ["acme/bad", "acme/half", "acme/once"]


def test_pruning_old_executions_changes_no_metric(k: Kit) -> None:
    """The serve loop's purge pass forgets executions past `executions.retention`; the figures stay."""
    k.deploy({WF.format("x"): wf("x", OK), WF.format("y"): wf("y", BROKEN)})
    for _ in range(3):
        k.run("acme/x")
        k.run("acme/y")
    retried = k.engine.retry(k.run("acme/y"))  # queued, linked to one that will be pruned
    k.clock.advance(days=2)
    before = [metrics(k, key, "7d", by_version=True) for key in ("acme/x", "acme/y")]
    with GitSource(str(k.path), data_dir=k.data_dir) as source:
        config = Config(execution_retention="1d")
        controller = Controller(Reconciler(source, k.store), k.engine, ServeOptions.of(config))
        assert controller.leadership.held()  # the purge is the leader's
        assert controller.purge() == 7
    assert [(e["id"], e["status"], e["retry_of"]) for e in _executions(k)] == [(retried, "queued", None)]
    assert [metrics(k, key, "7d", by_version=True) for key in ("acme/x", "acme/y")] == before
    with k.store.tx() as conn:
        assert retention.prune_executions(conn, k.clock.now()) == 0


def test_old_buckets_are_pruned_by_their_own_retention(k: Kit) -> None:
    """Hourly buckets go after 7 days; daily and per-action ones after the retention (30 days here)."""
    k.deploy({WF.format("x"): wf("x", OK)})
    k.run("acme/x")
    k.clock.advance(days=8)
    with k.store.tx() as conn:
        assert rollup.prune(conn, k.clock.now(), timedelta(days=30)) == 1  # the hour's bucket
        spans = set(conn.execute(select(metric_buckets.c.span)).scalars())
    assert spans == {"d"}
    month = metrics(k, "acme/x", "30d")["current"]
    assert month["executions"] == 1 and [a["action"] for a in month["slowest_actions"]] == ["note"]
    k.clock.advance(days=23)
    with k.store.tx() as conn:
        assert rollup.prune(conn, k.clock.now(), timedelta(days=30)) == 2  # the day's bucket and the action's hour
    assert metrics(k, "acme/x", "30d")["previous"]["executions"] == 0


def test_each_finished_execution_is_folded_once(k: Kit) -> None:
    """Resumed, retried and waited executions add one each: the buckets agree with the executions table."""
    k.deploy({WF.format("x"): wf("x", "    - {id: a, type: set, vars: {n: 1}}\n"
                                      "    - {id: pause, type: wait, duration: 10m}\n"
                                      "    - {id: b, type: set, vars: {n: 2}}\n")})
    for _ in range(5):
        k.engine.start("acme/x", {"type": "manual"})
    k.engine.run_until_idle()
    for _ in range(3):
        k.clock.advance(minutes=5)
        k.engine.run_until_idle()
    with k.store.read() as conn:
        finished = conn.execute(select(func.count()).where(executions.c.status == "succeeded")).scalar_one()
        counted = conn.execute(select(func.sum(metric_buckets.c.executions)).where(metric_buckets.c.span == "h")
                               ).scalar_one()
    assert finished == counted == 5


# -- the pure parts -------------------------------------------------------------------------------


def test_percentile_interpolates_inside_the_bucket() -> None:
    histogram = [0] * len(HISTOGRAM)
    histogram[rollup.histogram_index(0.3)] = 10  # 0.25 < 0.3 <= 0.5
    assert percentile(histogram, 0.5) == pytest.approx(0.375)
    assert percentile([0] * len(HISTOGRAM), 0.5) is None
    histogram[-1] = 90  # above the last bound: the last bound
    assert percentile(histogram, 0.95) == DURATION_BOUNDS[-1]
    assert rollup.histogram_index(DURATION_BOUNDS[0]) == 0 and rollup.histogram_index(1e9) == len(DURATION_BOUNDS)


def test_figures_of_nothing_are_empty_not_zero() -> None:
    empty = figures(None)
    assert empty["executions"] == 0 and empty["success_rate"] is None and empty["p95_active_seconds"] is None
    assert windows.delta(empty, figures({"executions": 1, "succeeded": 1, "active_sum": 0.0, "wait_sum": 0.0,
                                         "duration_max": 0.0}))["success_rate"] is None


def test_an_unknown_window_is_a_usage_error(k: Kit) -> None:
    k.deploy({WF.format("x"): wf("x", OK)})
    with pytest.raises(Exception, match="unknown window '1y'; use one of 24h, 7d, 30d"):
        metrics(k, "acme/x", "1y")
    with pytest.raises(Exception, match="no workflow 'acme/nope'"):
        metrics(k, "acme/nope")


def test_the_flag_defaults_to_on() -> None:
    assert Config().enabled("workflow_metrics", "acme")


def test_changes_name_the_version_that_made_it_worse() -> None:
    def v(number: int, rate: float | None, p95: float | None, commit: str = "") -> dict[str, Any]:
        return {"version": number, "commit": commit or None, "success_rate": rate, "p95_active_seconds": p95}

    assert windows.changes([v(3, 0.71, 2.5, "abc1234ffff"), v(2, 0.99, 0.9, "def5678"), v(0, None, None)]) == [
        "since v3 (commit abc1234) the success rate fell from 99.0% to 71.0%",
        "since v3 (commit abc1234) the p95 active time grew from 0.9 s to 2.5 s"]
    assert windows.changes([v(2, 0.995, 0.003), v(1, 1.0, 0.001)]) == []  # under a point, under 0.1 s: noise
    assert windows.changes([v(2, 1.0, 0.2), v(1, 0.5, 1.0)]) == [
        "since v2 the success rate rose from 50.0% to 100.0%", "since v2 the p95 active time shrank from 1 s to 0.2 s"]


def test_the_cli_offers_the_windows_there_are() -> None:
    from controller.cli_metrics import WINDOW_NAMES

    assert WINDOW_NAMES == tuple(windows.WINDOWS)  # (a copy, so that `wfctl --help` imports no SQL)
