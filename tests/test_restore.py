"""Restores never interrupt work in flight: held back while executions run or wait, applied after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from enginekit import Kit, kit
from gitutil import git

from controller.cli import cli

A, B = "workflows.d/acme/a.yaml", "workflows.d/acme/b.yaml"


def wf(name: str, value: str, wait: str = "1h") -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n"
            f"  trigger: {{type: manual, entities: [ticket]}}\n  actions:\n"
            f"    - {{id: nap, type: wait, duration: {wait}}}\n"
            f"    - {{id: mark, type: set, vars: {{v: {value}}}}}\n")


@pytest.fixture
def k(tmp_path: Path, store_url: str) -> Iterator[Kit]:
    with kit(tmp_path, store_url) as made:
        made.deploy({A: wf("a", "one"), B: wf("b", "one")}, "v1")
        made.deploy({A: wf("a", "two"), B: wf("b", "two")}, "v2")
        yield made


def status(k: Kit, key: str) -> dict:
    from controller.store import views

    with k.store.read() as conn:
        return next(w for w in views.status(conn)["workflows"] if w["id"] == key)


def audit(k: Kit, key: str) -> list[dict]:
    from controller.store import views

    with k.store.read() as conn:
        return views.audit(conn, key)


def test_revert_is_held_back_until_the_execution_finishes(k: Kit) -> None:
    """A revert of a busy workflow is Blocked naming the execution, then applies when it drains."""
    busy = k.run("acme/a")
    assert k.show(busy)["status"] == "waiting"
    git(k.path, "revert", "--no-edit", "HEAD")
    k.sync()
    a = status(k, "acme/a")
    assert (a["version"], a["sync"]) == (2, "Blocked")
    assert f"in flight: {busy}" in a["message"]
    blocked = {c["type"]: c for c in a["conditions"]}["Blocked"]
    assert (blocked["status"], blocked["reason"]) == ("True", "ExecutionsInFlight")
    assert status(k, "acme/b")["version"] == 3  # the idle workflow of the same revert restores at once
    assert audit(k, "acme/a")[0]["action"] == "blocked"
    k.sync()  # re-checked every pass, recorded once
    assert [e["action"] for e in audit(k, "acme/a")].count("blocked") == 1
    k.clock.advance(hours=1)
    k.engine.run_until_idle()
    assert k.show(busy)["status"] == "succeeded" and k.show(busy)["version"] == 2
    k.sync()
    a = status(k, "acme/a")
    assert (a["version"], a["sync"], a["message"]) == (3, "Synced", "")
    event = audit(k, "acme/a")[0]
    assert event["action"] == "restored" and "restored from version 1" in event["message"]


def test_trigger_while_blocked_is_held_then_runs_on_the_restored_version(k: Kit) -> None:
    """A new trigger during a held-back restore waits queued, then runs on the restored version."""
    busy = k.run("acme/a")
    git(k.path, "revert", "--no-edit", "HEAD")
    k.sync()
    held = k.engine.start("acme/a", {"type": "manual"})
    k.engine.run_until_idle()
    assert k.show(held)["status"] == "queued"
    assert status(k, "acme/a")["held_executions"] == 1
    assert status(k, "acme/a")["executions_in_flight"] == 1
    k.clock.advance(hours=1)
    k.engine.run_until_idle()  # the busy one finishes; the held one still may not start
    assert k.show(busy)["status"] == "succeeded" and k.show(held)["status"] == "queued"
    k.sync()
    k.engine.run_until_idle()
    k.clock.advance(hours=1)
    k.engine.run_until_idle()
    assert (k.show(held)["status"], k.show(held)["version"], k.show(held)["output"]) == ("succeeded", 3, {"v": "one"})


def test_later_commit_queues_behind_a_blocked_restore(k: Kit) -> None:
    """A commit after a held-back restore applies after it, in order, when the workflow drains."""
    busy = k.run("acme/a")
    git(k.path, "revert", "--no-edit", "HEAD")
    k.sync()
    k.commit({A: wf("a", "three")}, "v3 after the revert")
    k.sync()
    assert (status(k, "acme/a")["version"], status(k, "acme/a")["sync"]) == (2, "Blocked")
    k.engine.cancel(busy)  # the operator's escape hatch
    k.sync()
    from controller.store import views

    with k.store.read() as conn:
        history = views.history(conn, "acme/a")
    assert [(h["version"], h["restored_from"], h["summary"]) for h in history[:2]] == [
        (4, None, "v3 after the revert"), (3, 1, 'Revert "v2"')]


def test_plan_and_sync_exit_codes_while_blocked(k: Kit, tmp_path: Path, store_url: str) -> None:
    """plan shows the would-be-blocked restore as blocked (exit 1); sync exits 1 while it is held."""
    k.run("acme/a")
    git(k.path, "revert", "--no-edit", "HEAD")
    base = ["--repo", str(k.path), "--data-dir", str(k.data_dir), "--db", store_url]
    plan = CliRunner().invoke(cli, [*base, "plan"])
    assert plan.exit_code == 1 and "blocked" in plan.stdout and "acme/a" in plan.stdout
    synced = CliRunner().invoke(cli, [*base, "sync"])
    assert synced.exit_code == 1 and "Blocked" in synced.stdout


def test_wfctl_restore_refuses_while_busy_and_commits_when_idle(k: Kit, store_url: str) -> None:
    """wfctl restore exits 3 naming the executions while busy; when idle it commits version N's file."""
    busy = k.run("acme/a")
    base = ["--repo", str(k.path), "--data-dir", str(k.data_dir), "--db", store_url]
    refused = CliRunner().invoke(cli, [*base, "restore", "acme/a", "--to", "1"])
    assert refused.exit_code == 3 and str(busy) in refused.stderr
    k.engine.cancel(busy)
    done = CliRunner().invoke(cli, [*base, "restore", "acme/a", "--to", "1", "--message", "too loud"])
    assert done.exit_code == 0, done.output
    message = git(k.path, "log", "-1", "--format=%B")
    assert message.startswith("Restore acme/a to version 1\n\ntoo loud\n")
    assert "Restores: acme/a@1" in message
    assert (k.path / A).read_text() == wf("a", "one")
    assert git(k.path, "log", "-1", "--format=%an") == "Test Author"
    k.sync()
    assert status(k, "acme/a")["version"] == 3
    again = CliRunner().invoke(cli, [*base, "restore", "acme/a", "--to", "1"])
    assert again.exit_code == 2 and "nothing to restore" in again.stderr


def test_held_back_restore_is_in_the_controller_log(k: Kit, caplog: pytest.LogCaptureFixture) -> None:
    """The controller log says when a restore is held back and when it applies."""
    import logging

    busy = k.run("acme/a")
    git(k.path, "revert", "--no-edit", "HEAD")
    with caplog.at_level(logging.INFO, logger="controller.reconcile.reconciler"):
        k.sync()
        k.engine.cancel(busy)
        k.sync()
    text = caplog.text
    assert "acme/a: restore to version 1" in text and f"in flight: {busy}" in text
    assert "acme/a: version 3 restores version 1" in text


def test_force_push_that_drops_a_held_back_revert_clears_the_hold(k: Kit) -> None:
    """If history is rewritten without the held-back revert, the workflow is judged at head and unblocked."""
    k.run("acme/a")
    git(k.path, "revert", "--no-edit", "HEAD")
    k.sync()
    assert status(k, "acme/a")["sync"] == "Blocked"
    git(k.path, "reset", "--hard", "HEAD~1")
    git(k.path, "reflog", "expire", "--expire=now", "--all")
    git(k.path, "gc", "--prune=now", "-q")
    k.commit({"README.md": "rewritten\n"}, "unrelated")
    k.sync()
    a = status(k, "acme/a")
    assert (a["version"], a["sync"], a["message"]) == (2, "Synced", "")
    k.commit({B: wf("b", "three")}, "later")
    k.sync()  # passes after the rewrite work normally again
    b = status(k, "acme/b")  # v3 restored it with the revert, v4 back to v2's content at the rewritten head
    assert (b["version"], b["sync"]) == (5, "Synced")
