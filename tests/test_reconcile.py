"""Reconciling real git repositories into a real store (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from git import Repo
from gitutil import commit_files, git, make_repo
from wfyaml import broken_duration, workflow

from controller.reconcile.plan import Plan
from controller.reconcile.reconciler import Reconciler
from controller.source import GitSource
from controller.store import Store, open_store, views

A = "workflows.d/acme/a.yaml"
B = "workflows.d/acme/b.yaml"


@dataclass
class Env:
    repo: Repo
    path: Path
    store: Store
    data_dir: Path

    def sync(self) -> Plan:
        with GitSource(str(self.path), data_dir=self.data_dir) as source:
            return Reconciler(source, self.store, location=str(self.path)).sync()

    def plan(self) -> Plan:
        with GitSource(str(self.path), data_dir=self.data_dir) as source:
            return Reconciler(source, self.store, location=str(self.path)).plan()

    def commit(self, files: dict[str, str | None], message: str, **kw: Any) -> str:
        return commit_files(self.repo, files, message, **kw)

    def status(self) -> dict[str, Any]:
        with self.store.read() as conn:
            return views.status(conn)

    def workflow(self, key: str) -> dict[str, Any]:
        return next(w for w in self.status()["workflows"] if w["id"] == key)

    def history(self, key: str) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            return views.history(conn, key)

    def audit(self, key: str) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            return views.audit(conn, key)


@pytest.fixture
def env(tmp_path: Path, store_url: str) -> Iterator[Env]:
    path = tmp_path / "repo"
    store = open_store(store_url)
    yield Env(make_repo(path), path, store, tmp_path / "data")
    store.close()


def test_first_sync_creates_version_one_per_workflow(env: Env) -> None:
    """A first sync applies every workflow at head as version 1, attributed to its commit."""
    first = env.commit({A: workflow("a")}, "Add a", author_name="Ann", author_email="ann@acme.test")
    env.commit({B: workflow("b")}, "Add b")
    env.sync()
    history = env.history("acme/a")
    assert [(h["version"], h["commit"], h["author"], h["author_email"], h["summary"]) for h in history] == [
        (1, first, "Ann", "ann@acme.test", "Add a")
    ]
    assert {w["id"]: (w["version"], w["sync"]) for w in env.status()["workflows"]} == {
        "acme/a": (1, "Synced"), "acme/b": (1, "Synced")
    }


def test_update_delete_and_rename(env: Env) -> None:
    """Edits make new versions, a deleted file deletes the workflow, a rename moves it."""
    env.commit({A: workflow("a"), B: workflow("b")}, "Add a and b")
    env.sync()
    env.commit({A: workflow("a", subject="Changed")}, "Change a")
    env.commit({B: None}, "Drop b")
    env.sync()
    assert [h["version"] for h in env.history("acme/a")] == [2, 1]
    assert [w["id"] for w in env.status()["workflows"]] == ["acme/a"]
    assert env.audit("acme/b")[0]["action"] == "deleted"
    git(env.path, "mv", A, "workflows.d/acme/c.yaml")
    env.commit({"workflows.d/acme/c.yaml": workflow("c")}, "Rename a to c")
    env.sync()
    assert [w["id"] for w in env.status()["workflows"]] == ["acme/c"]
    assert env.audit("acme/a")[0]["action"] == "deleted"
    assert env.audit("acme/c")[0]["action"] == "created"


def test_three_commits_in_one_sync_make_three_versions(env: Env) -> None:
    """Each commit on the first-parent chain that changes a workflow becomes exactly one version."""
    env.commit({A: workflow("a")}, "v1")
    env.sync()
    shas = [env.commit({A: workflow("a", subject=f"s{i}")}, f"edit {i}") for i in range(3)]
    env.commit({"README.md": "not a workflow"}, "docs only")
    env.commit({A: workflow("a", subject="s2") + "# only a comment\n"}, "comment only")
    env.sync()
    history = env.history("acme/a")
    assert [(h["version"], h["commit"]) for h in history] == [(4, shas[2]), (3, shas[1]), (2, shas[0]), (1, history[-1]["commit"])]


def test_broken_commit_keeps_last_good_version_and_recovers(env: Env) -> None:
    """A broken file keeps its version and names path:line:col; the others apply; a fix recovers."""
    env.commit({A: workflow("a"), B: workflow("b")}, "Add")
    env.sync()
    env.commit({A: broken_duration("a"), B: workflow("b", subject="new")}, "Break a, change b")
    plan = env.sync()
    a = env.workflow("acme/a")
    assert a["sync"] == "Invalid" and a["version"] == 1
    assert "workflows.d/acme/a.yaml:19:7: spec.actions[1].duration: '5 minutes' is not a duration" in a["message"]
    assert env.workflow("acme/b")["version"] == 2
    assert plan.actions() == {"acme/a": "invalid", "acme/b": "update"}
    ready = {c["type"]: c for c in a["conditions"]}
    assert ready["Ready"]["status"] == "False" and ready["Stalled"]["status"] == "True"
    assert env.status()["source"]["conditions"][0]["status"] == "False"
    env.commit({A: workflow("a", subject="fixed")}, "Fix a")
    env.sync()
    a = env.workflow("acme/a")
    assert (a["sync"], a["version"], a["message"]) == ("Synced", 2, "")
    assert env.status()["source"]["conditions"][0]["status"] == "True"


def test_invalid_from_the_start_has_no_version(env: Env) -> None:
    """A workflow whose first file is broken shows Invalid with no version, then applies when fixed."""
    env.commit({A: "apiVersion: workflows/v1\nkind: Workflow\nmetadata: {name: a}\nspec: [\n"}, "Broken")
    env.sync()
    a = env.workflow("acme/a")
    assert a["version"] is None and a["sync"] == "Invalid" and "YAML syntax error" in a["message"]
    env.commit({A: workflow("a")}, "Fixed")
    env.sync()
    assert env.workflow("acme/a")["version"] == 1
    assert [e["action"] for e in env.audit("acme/a")] == ["created", "invalid"]


def test_git_revert_is_a_restore(env: Env) -> None:
    """Reverting the commit that made a version records a new version restored from the older one."""
    env.commit({A: workflow("a")}, "v1")
    env.sync()
    env.commit({A: workflow("a", subject="Two")}, "v2")
    env.sync()
    git(env.path, "revert", "--no-edit", "HEAD")
    plan = env.plan()
    assert plan.actions() == {"acme/a": "restore"}
    env.sync()
    history = env.history("acme/a")
    assert (history[0]["version"], history[0]["restored_from"]) == (3, 1)
    event = env.audit("acme/a")[0]
    assert event["action"] == "restored" and "restored from version 1" in event["message"]
    assert event["changes"] == [{"path": "spec.actions[mail-lead].subject", "old": "Two", "new": "Hello"}]


def test_field_level_audit_addresses_actions_by_id(env: Env) -> None:
    """The audit of an update lists changed fields as paths with actions named by id."""
    env.commit({A: workflow("a")}, "v1")
    env.sync()
    env.commit({A: workflow("a", subject="New", trigger="type: schedule\n    cron: '0 9 * * *'")}, "v2")
    env.sync()
    changes = {c["path"]: (c["old"], c["new"]) for c in env.audit("acme/a")[0]["changes"]}
    assert changes["spec.actions[mail-lead].subject"] == ("Hello", "New")
    assert changes["spec.trigger.type"] == ("manual", "schedule")
    assert changes["spec.trigger.cron"] == (None, "0 9 * * *")


def test_force_push_compares_the_whole_tree(env: Env) -> None:
    """After history is rewritten, the head tree is compared with the store; nothing is lost."""
    env.commit({A: workflow("a")}, "v1")
    env.commit({B: workflow("b")}, "add b")
    env.sync()
    git(env.path, "reset", "--hard", "HEAD~1")
    git(env.path, "reflog", "expire", "--expire=now", "--all")
    git(env.path, "gc", "--prune=now", "-q")
    rewritten = env.commit({A: workflow("a", subject="rewritten")}, "rewrite")
    plan = env.sync()
    assert plan.full
    assert plan.actions() == {"acme/a": "update", "acme/b": "delete"}
    assert env.history("acme/a")[0]["commit"] == rewritten
    assert env.status()["source"]["last_applied_commit"] == rewritten


def test_unknown_key_is_invalid_with_location(env: Env) -> None:
    """An unknown key is an error at its line and column, naming the key."""
    text = workflow("a").replace("  enabled: true\n", "  enabled: true\n  retries: 3\n")
    env.commit({A: text}, "typo")
    env.sync()
    message = env.workflow("acme/a")["message"]
    assert message.startswith("workflows.d/acme/a.yaml:7:3: spec.retries: unknown key 'retries'")


def test_cadence_floor_is_enforced_at_sync(env: Env) -> None:
    """A schedule firing more often than every 5 minutes is invalid and says the floor."""
    env.commit({A: workflow("a", trigger="type: schedule\n    cron: '*/2 * * * *'")}, "too often")
    env.sync()
    assert "5 minutes" in env.workflow("acme/a")["message"]


def test_call_cycle_is_reported(env: Env) -> None:
    """A call cycle is reported as a -> b -> a and the workflow closing it is not applied."""
    env.commit({A: workflow("a", calls=["b"]), B: workflow("b")}, "a calls b")
    env.sync()
    env.commit({B: workflow("b", calls=["a"])}, "b calls a")
    env.sync()
    b = env.workflow("acme/b")
    assert b["sync"] == "Invalid" and b["version"] == 1
    assert "call cycle: b -> a -> b" in b["message"]
    assert "workflows.d/acme/b.yaml:19:7" in b["message"]


def test_missing_call_target_and_later_recovery(env: Env) -> None:
    """A call to a missing workflow is invalid until the target is added, then it applies."""
    env.commit({A: workflow("a", calls=["b"])}, "a calls b")
    env.sync()
    assert "does not exist" in env.workflow("acme/a")["message"]
    env.commit({B: workflow("b")}, "add b")
    env.sync()
    assert env.workflow("acme/a")["sync"] == "Synced"
    assert env.workflow("acme/a")["version"] == 1
    env.commit({B: None}, "drop b")
    env.sync()
    a = env.workflow("acme/a")
    assert a["sync"] == "Invalid" and a["version"] == 1 and "does not exist" in a["message"]


def test_dirty_working_tree_is_not_applied(env: Env) -> None:
    """Definitions come from the commit, not from uncommitted edits in the checkout."""
    env.commit({A: workflow("a")}, "v1")
    (env.path / A).write_text(workflow("a", subject="uncommitted"))
    env.sync()
    with env.store.read() as conn:
        from controller.store.views import version_content
        assert version_content(conn, "acme/a", 1)["content"]["spec"]["actions"][0]["subject"] == "Hello"


def test_sync_with_nothing_new_writes_nothing(env: Env) -> None:
    """A second sync at the same head is a no-op plan."""
    env.commit({A: workflow("a")}, "v1")
    env.sync()
    plan = env.sync()
    assert plan.empty and plan.base == plan.head.sha


def test_concurrent_syncs_never_duplicate_or_skip(env: Env, store_url: str) -> None:
    """Several passes racing on the same commits still give versions 1..n exactly once each."""
    env.commit({A: workflow("a"), B: workflow("b")}, "v1")
    env.sync()
    for i in range(4):
        env.commit({A: workflow("a", subject=f"s{i}")}, f"edit {i}")
    errors: list[BaseException] = []

    def run() -> None:
        store = open_store(store_url)
        try:
            with GitSource(str(env.path), data_dir=env.data_dir) as source:
                Reconciler(source, store).sync()
        except BaseException as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)
        finally:
            store.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [h["version"] for h in env.history("acme/a")] == [5, 4, 3, 2, 1]
    assert [h["version"] for h in env.history("acme/b")] == [1]


def test_remote_url_is_cloned_and_fetched(tmp_path: Path, store_url: str) -> None:
    """A URL source is cloned into the data directory and fetched on every pass."""
    origin = tmp_path / "origin.git"
    make_repo(origin, bare=True)
    work = tmp_path / "work"
    repo = make_repo(work)
    commit_files(repo, {A: workflow("a")}, "v1")
    git(work, "push", "-q", str(origin), "main")
    store = open_store(store_url)
    data = tmp_path / "data"
    url = origin.as_uri()
    with GitSource(url, data_dir=data) as source:
        Reconciler(source, store, location=url).sync()
        commit_files(repo, {A: workflow("a", subject="pushed")}, "v2")
        git(work, "push", "-q", str(origin), "main")
        Reconciler(source, store, location=url).sync()
    with store.read() as conn:
        assert [h["summary"] for h in views.history(conn, "acme/a")] == ["v2", "v1"]
        assert views.status(conn)["source"]["location"] == url
    assert (data / "sources").is_dir()
    store.close()


def test_symlink_out_of_the_repository_invalidates_only_that_file(env: Env, tmp_path: Path) -> None:
    """A symlink leaving the repository is an error on that workflow; the others still apply."""
    outside = tmp_path / "secret.yaml"
    outside.write_text(workflow("a"))
    from gitutil import Symlink

    env.commit({A: Symlink(str(outside)), B: workflow("b")}, "link out")
    env.sync()
    a = env.workflow("acme/a")
    assert a["sync"] == "Invalid" and "symlink points outside the repository" in a["message"]
    assert env.workflow("acme/b")["sync"] == "Synced"


def test_symlink_inside_the_repository_is_followed(env: Env) -> None:
    """A symlink to another file of the repository reads that file's content at the same commit."""
    from gitutil import Symlink

    env.commit({"shared/a.yaml": workflow("a"), A: Symlink("../../shared/a.yaml")}, "link in")
    env.sync()
    assert env.workflow("acme/a")["version"] == 1


def test_ignored_files_are_not_workflows(env: Env) -> None:
    """Tests files, nested folders, files at the root and non-YAML files are not workflows."""
    env.commit({
        A: workflow("a"),
        "workflows.d/acme/a.tests.yaml": "cases: []\n",
        "workflows.d/acme/deeper/x.yaml": "junk: [\n",
        "workflows.d/top.yaml": "junk: [\n",
        "workflows.d/acme/notes.txt": "hello",
        "elsewhere/acme/b.yaml": "junk: [\n",
    }, "mixed")
    env.sync()
    assert [w["id"] for w in env.status()["workflows"]] == ["acme/a"]


def test_disabled_workflow_is_applied_as_disabled(env: Env) -> None:
    """enabled: false is a version like any other and shows in status."""
    env.commit({A: workflow("a", enabled=False)}, "off")
    env.sync()
    assert env.workflow("acme/a")["enabled"] is False


def test_references_are_checked_once_the_directory_is_loaded(env: Env) -> None:
    """With a directory loaded, a missing or inactive mailbox is an error naming the field and reference."""
    from datetime import datetime

    from controller.model.entries import DirectoryEntry
    from controller.store import directory as store_directory

    env.commit({A: workflow("a")}, "before any directory")
    env.sync()
    assert env.workflow("acme/a")["sync"] == "Synced"
    now = datetime.now(UTC)
    with env.store.tx() as conn:
        store_directory.replace_account(conn, "acme", [
            DirectoryEntry("mailbox", "mb_support", status="deactivated", data={"kind": "outbox", "address": "s@acme.test"}),
        ], now)
    env.commit({A: workflow("a", subject="two"), B: workflow("b").replace("mb_support", "mb_gone")}, "refs")
    env.sync()
    a, b = env.workflow("acme/a"), env.workflow("acme/b")
    assert a["sync"] == "Invalid" and "a.yaml:13:7: spec.actions[0].mailbox: mailbox:mb_support is deactivated" in a["message"]
    assert b["sync"] == "Invalid" and "mailbox:mb_gone is not in the directory of account 'acme'" in b["message"]
    with env.store.tx() as conn:
        store_directory.set_status(conn, "acme", "mailbox:mb_support", "active", now)
    env.commit({A: workflow("a", subject="three")}, "retry")
    env.sync()
    assert env.workflow("acme/a")["sync"] == "Synced"
