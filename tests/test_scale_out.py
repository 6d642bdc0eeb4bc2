"""Three `wfctl serve` replicas on one PostgreSQL database share the queue; kill -9 of any loses nothing.

2,000 record-triggered executions, each with a durable wait between two internal effects, are
created while replicas are killed with kill -9 at random moments and restarted. Afterwards every
ticket has exactly one execution, succeeded, with each of its three steps once (attempted once: a
kill never repeats an internal effect, it rolls it back with its step), exactly one task, and its
flag set. PostgreSQL only: SQLite is one process's store.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PG_SKIP, PG_URL, _pg_schema_url
from cryptography.fernet import Fernet
from gitutil import commit_files, make_repo
from servers import free_port
from sqlalchemy import func, select

from controller.engine.records import RecordService
from controller.engine.runtime import Engine
from controller.store import open_store, views
from controller.store import records as record_store
from controller.store.tables import executions

WORKFLOW = """apiVersion: workflows/v1
kind: Workflow
metadata: {name: relay}
spec:
  trigger: {type: record, entity: ticket, events: [created]}
  actions:
    - {id: make, type: record.create, entity: task, set: {ticket: "{{ record.id }}"}}
    - {id: nap, type: wait, duration: 1s}
    - {id: flag, type: record.update, entity: ticket, record_id: "{{ record.id }}", set: {done: true}}
"""
STEPS = ("make", "nap", "flag")
TICKETS, BATCH, REPLICAS = 2000, 100, 3


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip(PG_SKIP)
    yield from _pg_schema_url(PG_URL)


def test_three_replicas_killed_at_random_run_every_execution_exactly_once(tmp_path: Path, pg_url: str) -> None:
    rng = random.Random(20261201)
    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {"workflows.d/acme/relay.yaml": WORKFLOW}, "add")
    env = {**os.environ, "WFC_SECRET_KEY": Fernet.generate_key().decode()}  # one key for every replica

    def base(i: int) -> list[str]:
        return [sys.executable, "-m", "controller", "--repo", str(repo), "--db", pg_url,
                "--data-dir", str(tmp_path / f"data{i}")]

    subprocess.run([*base(0), "sync"], check=True, capture_output=True, timeout=60, env=env)
    ports = [free_port() for _ in range(REPLICAS)]

    def serve(i: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*base(i), "serve", "--interval", "0.5", "--workers", "2", "--worker-processes", "0",
                                 "--lease", "2", "--port", str(ports[i])], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    store = open_store(pg_url)
    writer = RecordService(Engine(store, data_dir=tmp_path / "writer"))
    replicas = [serve(i) for i in range(REPLICAS)]
    kills = 0
    try:
        for batch in range(TICKETS // BATCH):
            for _ in range(BATCH):
                writer.create("acme", "ticket", {"title": "t"})
            if batch % 4 == 1:  # five times in the run, a random replica at a random moment
                time.sleep(rng.uniform(0.0, 1.5))
                victim = rng.randrange(REPLICAS)
                replicas[victim].send_signal(signal.SIGKILL)
                replicas[victim].wait(10)
                kills += 1
                replicas[victim] = serve(victim)
        _until_succeeded(store, TICKETS, timeout=240)
    finally:
        for replica in replicas:
            replica.send_signal(signal.SIGTERM)
        for replica in replicas:
            try:
                replica.wait(20)
            except subprocess.TimeoutExpired:
                replica.kill()
    try:
        with store.read() as conn:
            rows = views.executions_list(conn, workflow="acme/relay", limit=100_000)
            traces = [views.execution(conn, row["id"]) for row in rows]
            tasks = Counter(str(t["ticket"]) for t in record_store.list_records(conn, "acme", "task", limit=100_000))
            tickets = record_store.list_records(conn, "acme", "ticket", limit=100_000)
    finally:
        store.close()
    assert kills == 5 and len(tickets) == TICKETS
    per_ticket = Counter(str(t["trigger"]["record"]["id"]) for t in traces)
    assert len(traces) == TICKETS and set(per_ticket.values()) == {1}, "one execution per ticket"
    wrong = []
    for trace in traces:
        steps = {s["action_id"]: s for s in trace["steps"]}
        ticket = str(trace["trigger"]["record"]["id"])
        if trace["status"] != "succeeded" or sorted(steps) != sorted(STEPS) or tasks[ticket] != 1:
            wrong.append(f"execution {trace['id']}: {trace['status']}, steps {sorted(steps)}, {tasks[ticket]} tasks")
        wrong += [f"execution {trace['id']} {name}: {steps[name]['attempts']} attempts"
                  for name in ("make", "flag") if name in steps and steps[name]["attempts"] != 1]
    assert not wrong, wrong[:10]
    assert all(t.get("done") is True for t in tickets)


def _until_succeeded(store: object, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        with store.read() as conn:  # type: ignore[attr-defined]
            done = conn.execute(select(func.count()).where(executions.c.status == "succeeded")).scalar_one()
        if done >= expected:
            return
        time.sleep(0.5)
    raise AssertionError(f"only {done} of {expected} executions succeeded in {timeout:g}s")
