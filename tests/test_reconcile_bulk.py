"""What a cold sync does for speed keeps its answers: the collector is paused and given back, the calls a
worker found are the workflow's, and a pass that both inserts and updates workflow rows writes what the
store had before the first-sync shortcut (every row once, ids in key order)."""

from __future__ import annotations

import gc
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from gitutil import commit_files, make_repo
from sqlalchemy import select
from test_pool import GOOD

from controller.model.directory import parse_directory
from controller.reconcile import pool
from controller.reconcile.apply import json_texts
from controller.reconcile.diff import field_changes
from controller.reconcile.loader import bulk_loading, classify, load
from controller.reconcile.plan import VersionOp
from controller.reconcile.reconciler import Reconciler
from controller.source import CommitInfo, GitSource
from controller.store import open_store
from controller.store.directory import replace_account
from controller.store.tables import workflows

CALLEE = GOOD
CALLER = GOOD.replace('    - {{id: note, type: set, vars: {{n: "{n}"}}}}\n', """\
    - {{id: b, type: workflow.call, workflow: zeta}}
    - id: when
      type: if
      condition: "{{{{ true }}}}"
      then:
        - {{id: a, type: workflow.call, workflow: alpha}}
""")


def test_bulk_loading_pauses_the_collector_and_gives_it_back_once_outermost() -> None:
    assert gc.isenabled()
    with bulk_loading():
        assert not gc.isenabled()
        with bulk_loading():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block does not turn it on under the outer one
    assert gc.isenabled()
    gc.disable()
    try:
        with bulk_loading():
            pass
        assert not gc.isenabled()  # off before: left off
    finally:
        gc.enable()


def test_loaded_calls_are_the_workflows_calls_sorted() -> None:
    where = classify("workflows.d/acme/main.yaml", "workflows.d")
    assert where is not None
    loaded = load(where, CALLER.format(name="main").encode())
    assert loaded.ok and loaded.workflow is not None
    assert loaded.calls == ("alpha", "zeta") == tuple(sorted(loaded.workflow.calls()))


def test_a_pass_that_inserts_and_updates_rows_gives_each_workflow_its_end_state(tmp_path: Path, store_url: str) -> None:
    repo = make_repo(tmp_path / "repo")
    commit_files(repo, {"workflows.d/acme/alpha.yaml": CALLEE.format(name="alpha", n=1),
                        "workflows.d/acme/zeta.yaml": CALLEE.format(name="zeta", n=1)}, "two")
    store = open_store(store_url)
    with GitSource(str(tmp_path / "repo"), data_dir=tmp_path / "data") as source:
        reconciler = Reconciler(source, store)
        reconciler.sync()
        commit_files(repo, {"workflows.d/acme/alpha.yaml": CALLEE.format(name="alpha", n=2),
                            "workflows.d/acme/main.yaml": CALLER.format(name="main"),
                            "workflows.d/acme/broken.yaml": "kind: [unclosed\n"}, "edit one, add two")
        plan = reconciler.sync()
    assert plan.actions() == {"acme/alpha": "update", "acme/main": "create", "acme/broken": "invalid"}
    with store.read() as conn:
        rows = {w["key"]: w for w in conn.execute(select(workflows).order_by(workflows.c.id)).mappings()}
    assert list(rows) == ["acme/alpha", "acme/zeta", "acme/broken", "acme/main"]  # new rows in key order
    assert [rows[k]["version"] for k in ("acme/alpha", "acme/broken", "acme/main", "acme/zeta")] == [2, 0, 1, 1]
    assert rows["acme/main"]["calls"] == ["alpha", "zeta"] and rows["acme/main"]["trigger_type"] == "webhook"
    assert rows["acme/broken"]["sync"] == "Invalid" and rows["acme/alpha"]["sync"] == "Synced"
    assert rows["acme/broken"]["created_at"] == rows["acme/broken"]["updated_at"]
    assert [c["status"] for c in rows["acme/main"]["conditions"] if c["type"] == "Ready"] == ["True"]
    head = rows["acme/alpha"]["last_attempted_commit"]
    assert all(r["last_attempted_commit"] == head for k, r in rows.items() if k != "acme/zeta")


def test_json_texts_are_what_the_json_columns_would_write() -> None:
    where = classify("workflows.d/acme/main.yaml", "workflows.d")
    assert where is not None
    new = load(where, CALLER.format(name="main").encode())
    old = load(where, CALLER.replace("zeta", "omega").format(name="main").encode())
    commit = CommitInfo("0" * 40, "A", "a@example.com", datetime.now(UTC), "edit", "edit", ())
    for changes in (field_changes({}, new.content), field_changes(old.content, new.content)):
        op = VersionOp(new.key, where.path, 1, "created", commit, new.content, new.content_hash, new.source_text,
                       None, changes, True, "webhook", new.calls)
        assert json_texts(op) == (json.dumps(op.content), json.dumps(op.changes))


def _mail(name: str, mailbox: str) -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n"
            f"  trigger: {{type: webhook}}\n  actions:\n"
            f"    - {{id: tell, type: email.send, mailbox: '{mailbox}', to: a@b.test, subject: s, body: b}}\n")


def test_a_cold_sync_over_the_pool_judges_references_when_a_directory_is_loaded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers leave the models out only when no account has a directory (references need them)."""
    monkeypatch.setattr(pool, "PARALLEL_FROM", 2)
    monkeypatch.setattr(pool, "CHUNK", 2)
    monkeypatch.setattr(pool, "cores", lambda: 2)
    files = {f"workflows.d/{account}/{name}.yaml": _mail(name, mailbox) for account, name, mailbox in [
        ("acme", "ok", "mailbox:mb_support"), ("acme", "sales", "mailbox:mb_sales"),
        ("globex", "free", "mailbox:mb_anything"), ("globex", "other", "mailbox:mb_else")]}
    commit_files(make_repo(tmp_path / "repo"), files, "import")

    def messages(name: str, directory: bool) -> dict[str, str]:
        store = open_store(f"sqlite:///{tmp_path / name}.db")
        if directory:
            with store.tx() as conn:
                replace_account(conn, "acme", parse_directory(
                    "mailboxes:\n  - {id: mb_support, address: s@acme.test, kind: outbox}\n", "acme.yaml"),
                    datetime.now(UTC))
        with GitSource(str(tmp_path / "repo"), data_dir=tmp_path / name) as source:
            Reconciler(source, store).sync()
        with store.read() as conn:
            found = {w["key"]: w["message"] for w in conn.execute(select(workflows)).mappings()}
        store.close()
        return found

    judged = messages("with", directory=True)
    assert judged["acme/ok"] == "" and "mailbox:mb_sales is not in the directory" in judged["acme/sales"]
    assert judged["globex/free"] == judged["globex/other"] == ""  # no directory for globex: not judged
    assert set(messages("without", directory=False).values()) == {""}
