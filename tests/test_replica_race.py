"""Replicas racing the same reconcile on PostgreSQL: every commit becomes each version exactly once.

Who applies: `wfctl serve` reconciles only while it holds the leader lease (its apply is fenced by the
lease generation); a one-shot `wfctl sync` takes no lease and applies unfenced. Both plan outside any
lock and apply under the store's advisory write lock, where the apply re-reads the source's
``last_attempted_commit`` and refuses a plan made from an older one (the pass plans again). So the
product promises that any number of syncs and the leader may race on one commit: each change is
written once. Here two `wfctl sync` processes and a serving leader (kicked through the git push hook)
start on each new commit at the same instant, over commits that add, change, remove and re-add
workflows; afterwards the store is checked against the repository's own history.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import PG_SKIP, PG_URL, _pg_schema_url
from cryptography.fernet import Fernet
from enginekit import read_store
from gitutil import commit_files, git, make_repo
from httpkit import SET, WF, wf
from servers import free_port, ready, until
from sqlalchemy import Connection, select

from controller.store.leadership import recent
from controller.store.tables import audit_events, sources, webhook_secrets, workflow_versions, workflows

GIT_SECRET = "race-hook-secret"
SYNCS = 2  # one-shot syncs per commit, besides the serving leader
BULK = 150  # workflows every commit changes too: planning takes long enough for the passes to overlap

# The syncs import wfctl (and what a sync imports lazily) first and then wait for one go file, so that
# Python's start-up (a second or more on a loaded machine) does not decide who plans first: from the go
# file on it is the real CLI.
_AT_ONCE = (
    "import os, sys, time\n"
    "from controller.cli import main\n"
    "import controller.reconcile.reconciler, controller.security.secrets, controller.store.views, psycopg\n"
    "go = os.environ['RACE_GO']\n"
    "print('ready', flush=True)\n"
    "while not os.path.exists(go):\n"
    "    time.sleep(0.001)\n"
    "sys.argv = ['wfctl', *sys.argv[1:]]\n"
    "main()\n"
)


def flow(name: str, note: str, trigger: str = "{type: manual, entities: [ticket]}") -> str:
    """A valid workflow whose content (its description) differs by ``note``: a new content hash per note."""
    return wf(name, trigger, SET).replace(f"the {name} workflow", f"the {name} workflow, {note}")


# Each round is one commit: path -> new text, or None to remove the file.
ROUNDS: list[tuple[str, dict[str, str | None]]] = [
    ("add three", {WF.format("acme", "alpha"): flow("alpha", "a1"), WF.format("acme", "beta"): flow("beta", "b1"),
                   WF.format("globex", "hook"): flow("hook", "h1", "{type: webhook}")}),
    ("change alpha", {WF.format("acme", "alpha"): flow("alpha", "a2")}),
    ("change beta and hook, add gamma", {WF.format("acme", "beta"): flow("beta", "b2"),
                                         WF.format("globex", "hook"): flow("hook", "h2", "{type: webhook}"),
                                         WF.format("acme", "gamma"): flow("gamma", "g1")}),
    ("remove beta", {WF.format("acme", "beta"): None}),
    ("change gamma, remove alpha", {WF.format("acme", "gamma"): flow("gamma", "g2"), WF.format("acme", "alpha"): None}),
    ("re-add beta as it was, change hook", {WF.format("acme", "beta"): flow("beta", "b2"),
                                            WF.format("globex", "hook"): flow("hook", "h3", "{type: webhook}")}),
    ("change everything present", {WF.format("acme", "beta"): flow("beta", "b3"),
                                   WF.format("acme", "gamma"): flow("gamma", "g3"),
                                   WF.format("globex", "hook"): flow("hook", "h4", "{type: webhook}")}),
]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema: several replicas on one store is PostgreSQL's (SQLite has one process)."""
    if not PG_URL:
        pytest.skip(PG_SKIP)
    yield from _pg_schema_url(PG_URL)


@pytest.mark.postgres
def test_two_syncs_and_the_leader_racing_each_commit_write_each_version_once(tmp_path: Path, pg_url: str) -> None:
    """Seven commits, each raced by two `wfctl sync` runs and the leader's pass (git push hook) at once: the
    versions, audit events and the one webhook secret are written once, and the store ends at the head."""
    repo_path = tmp_path / "repo"
    repo = make_repo(repo_path)
    commit_files(repo, {"README.md": "workflows follow\n"}, "start")  # serve wants a branch with a commit
    env = {**os.environ, "WFC_SECRET_KEY": Fernet.generate_key().decode(), "WFC_GIT_WEBHOOK_SECRET": GIT_SECRET}

    def base(data: str) -> list[str]:
        return ["--repo", str(repo_path), "--db", pg_url, "--data-dir", str(tmp_path / data)]

    port = free_port()
    (tmp_path / "serve").mkdir()
    with (tmp_path / "serve" / "serve.log").open("wb") as log:  # read when the test fails
        leader = subprocess.Popen(
            [sys.executable, "-m", "controller", *base("serve"), "-v", "serve", "--interval", "30", "--workers", "1",
             "--worker-processes", "0", "--lease-ttl", "5", "--port", str(port)], env=env,
            stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    conflicts = 0
    winners: Counter[str] = Counter()  # which pass applied each commit
    history: list[tuple[str, dict[str, str | None]]] = []  # (sha, what the commit wrote)
    syncs: list[subprocess.Popen[bytes]] = []
    go = tmp_path / "go"
    try:
        until(lambda: ready(url) and _leads(pg_url), timeout=30)
        for number, (message, files) in enumerate(ROUNDS):
            go = tmp_path / f"go{number}"
            syncs = [subprocess.Popen([sys.executable, "-c", _AT_ONCE, *base(f"sync{i}"), "-v", "sync", "--json"],
                                      env={**env, "RACE_GO": str(go)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                     for i in range(SYNCS)]
            for process in syncs:
                assert process.stdout is not None and process.stdout.readline() == b"ready\n"
            files = {**files, **{WF.format("bulk", f"w{i}"): flow(f"w{i}", f"r{number}") for i in range(BULK)}}
            history.append((commit_files(repo, files, message), files))
            go.touch()  # the syncs start ...
            kicked = requests.post(f"{url}/hooks/git", data=b"{}", headers={"X-Gitlab-Token": GIT_SECRET}, timeout=10)
            assert kicked.status_code in (200, 202), kicked.text  # ... and so does the leader's pass
            for i, process in enumerate(syncs):
                out, err = process.communicate(timeout=60)
                assert process.returncode == 0, err.decode()
                assert json.loads(out)["head"] == history[-1][0]
                conflicts += err.decode().count("while this pass planned from")
                winners[f"sync{i}"] += bool(json.loads(out)["applied"])
    finally:
        go.touch()  # a failed round: no sync waits for ever for its start
        for process in syncs:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        leader.terminate()
        try:
            leader.wait(20)  # a clean stop ends its pass: whatever it did is in the store now
        except subprocess.TimeoutExpired:
            leader.kill()
            raise
    state = read_store(pg_url, _state)
    leader_conflicts = (tmp_path / "serve" / "serve.log").read_text().count("while this pass planned from")
    winners["leader"] = len(ROUNDS) - sum(winners.values())
    print(f"{len(ROUNDS)} commits, {SYNCS} syncs + the leader each: {conflicts} sync and {leader_conflicts} leader "
          f"passes planned from a commit another pass had just applied (and planned again); applied by {dict(winners)}")
    assert conflicts + leader_conflicts > 0, "no two passes planned from the same commit: the race did not happen"
    _check(state, history, git(repo_path, "rev-parse", "HEAD"), repo_path)


def _leads(url: str) -> bool:
    return any(r["role"] == "leader" for r in read_store(url, recent))


def _state(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    """Every row the checks read: workflows, versions and audit events (with the workflow key), secrets, sources."""
    key = workflows.c.key
    queries = {
        "workflows": select(workflows),
        "versions": select(key, workflow_versions).join(workflows, workflows.c.id == workflow_versions.c.workflow_id)
        .order_by(key, workflow_versions.c.version),
        "audit": select(key, audit_events.c.action, audit_events.c.version, audit_events.c.commit)
        .join(workflows, workflows.c.id == audit_events.c.workflow_id),
        "secrets": select(webhook_secrets),
        "sources": select(sources),
    }
    return {name: [dict(row) for row in conn.execute(query).mappings()] for name, query in queries.items()}


def _key(path: str) -> str:
    account, name = path.removeprefix("workflows.d/").removesuffix(".yaml").split("/")
    return f"{account}/{name}"


def _check(state: dict[str, list[dict[str, Any]]], history: list[tuple[str, dict[str, str | None]]], head: str,
           repo_path: Path) -> None:
    # What the history says: each commit that writes a workflow's file is one version of it, in order.
    expected_versions: dict[str, list[str]] = {}
    expected_deletes: dict[str, list[str]] = {}
    for sha, files in history:
        for path, text in files.items():
            (expected_versions if text is not None else expected_deletes).setdefault(_key(path), []).append(sha)
    versions: dict[str, list[dict[str, Any]]] = {}
    for row in state["versions"]:
        versions.setdefault(str(row["key"]), []).append(row)

    assert {k: [v["commit"] for v in rows] for k, rows in versions.items()} == expected_versions
    for key, rows in versions.items():
        assert [v["version"] for v in rows] == list(range(1, len(rows) + 1)), f"{key}: version numbers"
        per_commit = Counter((v["commit"], v["content_hash"]) for v in rows)
        assert set(per_commit.values()) == {1}, f"{key}: one content hash twice from one commit"

    audit = Counter((a["key"], a["action"], a["version"], a["commit"]) for a in state["audit"])
    assert [a for a, n in audit.items() if n > 1] == [], "audit rows doubled"
    version_events = Counter((a["key"], a["commit"]) for a in state["audit"] if a["action"] != "deleted"
                             and a["commit"] is not None)
    assert version_events == Counter((k, sha) for k, shas in expected_versions.items() for sha in shas)
    deletes = Counter((a["key"], a["commit"]) for a in state["audit"] if a["action"] == "deleted")
    assert deletes == Counter((k, sha) for k, shas in expected_deletes.items() for sha in shas)
    created = Counter(a["key"] for a in state["audit"] if a["action"] == "secret_created")
    assert created == {"globex/hook": 1} and len(state["secrets"]) == 1, "one secret made, once"

    # The applied state is the head commit: the files present, each at its newest version with its text.
    [source] = state["sources"]
    assert source["last_applied_commit"] == source["last_attempted_commit"] == head
    present = {_key(p.relative_to(repo_path).as_posix()): p.read_text()
               for p in (repo_path / "workflows.d").rglob("*.yaml")}
    rows = {str(w["key"]): w for w in state["workflows"]}
    assert {k for k, w in rows.items() if not w["deleted"]} == set(present)
    for key, text in present.items():
        newest = versions[key][-1]
        assert rows[key]["version"] == newest["version"] and rows[key]["sync"] == "Synced"
        assert rows[key]["content_hash"] == newest["content_hash"] and newest["source_text"] == text
    assert all(rows[k]["deleted"] for k in rows.keys() - present.keys())
