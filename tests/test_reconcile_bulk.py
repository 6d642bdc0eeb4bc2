"""What a cold sync does for speed keeps its answers: the collector is paused and given back, the calls a
worker found are the workflow's, and a pass that both inserts and updates workflow rows writes what the
store had before the first-sync shortcut (every row once, ids in key order)."""

from __future__ import annotations

import gc
from pathlib import Path

from gitutil import commit_files, make_repo
from sqlalchemy import select

from controller.reconcile.loader import bulk_loading, classify, load
from controller.reconcile.reconciler import Reconciler
from controller.source import GitSource
from controller.store import open_store
from controller.store.tables import workflows

CALLER = """apiVersion: workflows/v1
kind: Workflow
metadata: {{name: {name}}}
spec:
  trigger: {{type: webhook}}
  actions:
    - {{id: b, type: workflow.call, workflow: zeta}}
    - id: when
      type: if
      condition: "{{{{ true }}}}"
      then:
        - {{id: a, type: workflow.call, workflow: alpha}}
"""
CALLEE = """apiVersion: workflows/v1
kind: Workflow
metadata: {{name: {name}}}
spec:
  trigger: {{type: webhook}}
  actions:
    - {{id: note, type: set, vars: {{n: "{n}"}}}}
"""


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


def test_a_pass_that_inserts_and_updates_rows_gives_each_workflow_its_end_state(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    commit_files(repo, {"workflows.d/acme/alpha.yaml": CALLEE.format(name="alpha", n=1),
                        "workflows.d/acme/zeta.yaml": CALLEE.format(name="zeta", n=1)}, "two")
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
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
