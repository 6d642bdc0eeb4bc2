"""Property: whatever sequence of edits, reverts, deletes, broken commits and syncs happens, the
store ends equal to the last valid content of each file at head, with versions 1..n and no gaps."""

from __future__ import annotations

import tempfile
from pathlib import Path

from gitutil import commit_files, git, make_repo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wfyaml import broken_duration, workflow

from controller.reconcile.reconciler import Reconciler
from controller.source import GitSource
from controller.store import open_store, views

NAMES = ("a", "b", "c")
SUBJECTS = ("one", "two", "three")
BROKEN = "broken"

Snapshot = dict[str, str]  # name -> subject or BROKEN; absent = no file

ops = st.one_of(
    st.tuples(st.just("edit"), st.sampled_from(NAMES), st.sampled_from(SUBJECTS)),
    st.tuples(st.just("break"), st.sampled_from(NAMES), st.just(BROKEN)),
    st.tuples(st.just("delete"), st.sampled_from(NAMES), st.just("")),
    st.tuples(st.just("revert"), st.just(""), st.just("")),
    st.tuples(st.just("sync"), st.just(""), st.just("")),
)


def _text(name: str, state: str) -> str:
    return broken_duration(name) if state == BROKEN else workflow(name, subject=state)


def _expected(snapshots: list[Snapshot], name: str) -> tuple[str | None, int]:
    """(subject of the active version or None, number of versions) by replaying every commit."""
    active: str | None = None
    count = 0
    for snap in snapshots:
        state = snap.get(name)
        if state is None:
            active = None
        elif state != BROKEN and state != active:
            active, count = state, count + 1
    return active, count


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(initial=st.dictionaries(st.sampled_from(NAMES), st.sampled_from((*SUBJECTS, BROKEN)), min_size=1),
       steps=st.lists(ops, max_size=10))
def test_store_matches_last_valid_content_at_head(initial: Snapshot, steps: list[tuple[str, str, str]]) -> None:
    """Random edits, reverts and broken commits leave the store equal to the last valid content at head."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "repo"
        repo = make_repo(path)
        store = open_store(f"sqlite:///{tmp}/store.db")
        snapshots: list[Snapshot] = [dict(initial)]
        commit_files(repo, {f"workflows.d/acme/{n}.yaml": _text(n, s) for n, s in initial.items()}, "initial")
        source = GitSource(str(path), data_dir=Path(tmp) / "data")
        reconciler = Reconciler(source, store)
        reconciler.sync()
        for op, name, arg in steps:
            current = dict(snapshots[-1])
            if op == "sync":
                reconciler.sync()
                continue
            if op == "revert":
                if len(snapshots) < 2:
                    continue
                git(path, "revert", "--no-edit", "HEAD")
                snapshots.append(dict(snapshots[-2]))
                continue
            if op == "delete":
                if name not in current:
                    continue
                del current[name]
                change = None
            else:
                if current.get(name) == arg:
                    continue
                current[name] = arg
                change = _text(name, arg)
            commit_files(repo, {f"workflows.d/acme/{name}.yaml": change}, f"{op} {name}")
            snapshots.append(current)
        reconciler.sync()
        with store.read() as conn:
            status = {w["id"]: w for w in views.status(conn)["workflows"]}
            for name in NAMES:
                key = f"acme/{name}"
                active, count = _expected(snapshots, name)
                head = snapshots[-1].get(name)
                if head is None:
                    assert key not in status
                    continue
                row = status[key]
                assert row["sync"] == ("Invalid" if head == BROKEN else "Synced")
                history = views.history(conn, key)
                assert [h["version"] for h in history] == list(range(count, 0, -1))
                if active is None:
                    assert row["version"] is None
                else:
                    assert row["version"] == count
                    content = views.version_content(conn, key, count)["content"]
                    assert content["spec"]["actions"][0]["subject"] == active
        source.close()
        store.close()
