"""Loading over a process pool gives what loading in-process gives, in the same order (cold sync, validate)."""

from __future__ import annotations

from pathlib import Path

import pytest
from gitutil import commit_files, make_repo

from controller.reconcile import pool
from controller.reconcile.loader import classify, load
from controller.reconcile.reconciler import Reconciler
from controller.reconcile.validate import validate_tree
from controller.source import GitSource
from controller.store import open_store
from controller.store.views import status

GOOD = """apiVersion: workflows/v1
kind: Workflow
metadata: {{name: {name}}}
spec:
  trigger: {{type: webhook}}
  actions:
    - {{id: note, type: set, vars: {{n: "{n}"}}}}
"""
BAD_FIELD = GOOD.replace("type: set", "type: sett")
BAD_YAML = "apiVersion: workflows/v1\nkind: [unclosed\n"


def _files(count: int) -> dict[str, str]:
    files = {}
    for n in range(count):
        name = f"w{n:03d}"
        text = GOOD if n % 5 else BAD_FIELD if n % 10 else BAD_YAML
        files[f"workflows.d/acct-{n % 3}/{name}.yaml"] = text.format(name=name, n=n)
    return files


@pytest.fixture
def forced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool of two processes for a handful of files (the real threshold is hundreds)."""
    monkeypatch.setattr(pool, "PARALLEL_FROM", 2)
    monkeypatch.setattr(pool, "CHUNK", 3)
    monkeypatch.setattr(pool, "cores", lambda: 2)


def test_the_pool_answers_what_loading_in_process_answers_in_order(forced: None) -> None:
    items = []
    for path, text in _files(23).items():
        where = classify(path, "workflows.d")
        assert where is not None
        items.append((where, text.encode()))
    items.append((classify("workflows.d/acct-0/not-utf8.yaml", "workflows.d"), b"\xff\xfe"))
    parallel = pool.load_all(items)  # type: ignore[arg-type]
    assert parallel == [load(where, data) for where, data in items]  # type: ignore[arg-type]
    assert sum(1 for loaded in parallel if loaded.ok) == 18
    assert all(p.line > 0 for loaded in parallel[:-1] for p in loaded.problems)  # placed at path:line:col


def test_a_cold_sync_and_validate_over_the_pool_match_in_process(tmp_path: Path, forced: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    files = _files(23)
    commit_files(make_repo(tmp_path / "repo"), files, "import")

    def sync(name: str) -> list[dict[str, object]]:
        store = open_store(f"sqlite:///{tmp_path / name}.db")
        with GitSource(str(tmp_path / "repo"), data_dir=tmp_path / name) as source:
            Reconciler(source, store).sync()
        with store.read() as conn:
            rows = status(conn)["workflows"]
        store.close()
        kept = ("id", "path", "version", "enabled", "trigger", "sync", "message", "last_applied_commit")
        return sorted(({k: row[k] for k in kept} for row in rows), key=lambda row: str(row["id"]))

    over_pool = sync("pool")
    report_pool = validate_tree(tmp_path / "repo", "workflows.d")
    monkeypatch.setattr(pool, "PARALLEL_FROM", 10_000)
    assert sync("inproc") == over_pool
    report = validate_tree(tmp_path / "repo", "workflows.d")
    assert report.problems == report_pool.problems and len(report.problems) >= 5
    assert report.files == report_pool.files == 23
