"""Three `wfctl serve` replicas on one PostgreSQL database share the queue; kill -9 of any loses nothing.

2,000 record-triggered executions, each with a durable wait between two internal effects, are
created while followers are killed with kill -9 at random moments and restarted, and the leader is
killed once: another replica takes the lease (``--lease-ttl 2``) and the schedule keeps firing once
per instant. Afterwards every ticket has exactly one execution, succeeded, with each of its three
steps once (attempted once: a kill never repeats an internal effect, it rolls it back with its
step), exactly one task, and its flag set; every instant in ``schedule_fires`` has exactly one
execution of the schedule workflow and none has two. PostgreSQL only: SQLite is one process's store.

The schedule (every 5 minutes) is made due by editing its job row, as the scheduler would leave it:
an instant before the take-over, the same instant again right at the leader's kill (as if it died
before moving its job on: the new leader must skip it), and a new instant after the take-over.
Random kills spare the leader so each take-over is the one the test asked for, and a job row edit
is never overwritten by a scheduler that is just registering.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import leasekit
import pytest
from conftest import PG_SKIP, PG_URL, _pg_schema_url
from cryptography.fernet import Fernet
from enginekit import read_store
from gitutil import commit_files, make_repo
from leasekit import JOB, TICK
from servers import free_port, stop, until
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
FIRST_FIRE, LEADER_KILL = 2, 11  # the batches after which the schedule fires, and after which the leader dies


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip(PG_SKIP)
    yield from _pg_schema_url(PG_URL)


def test_three_replicas_killed_at_random_and_the_leader_killed_run_everything_exactly_once(
        tmp_path: Path, pg_url: str) -> None:
    rng = random.Random(20261201)
    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {"workflows.d/acme/relay.yaml": WORKFLOW, "workflows.d/acme/tick.yaml": TICK}, "add")
    env = {**os.environ, "WFC_SECRET_KEY": Fernet.generate_key().decode()}  # one key for every replica

    def base(i: int) -> list[str]:
        return [sys.executable, "-m", "controller", "--repo", str(repo), "--db", pg_url,
                "--data-dir", str(tmp_path / f"data{i}")]

    subprocess.run([*base(0), "sync"], check=True, capture_output=True, timeout=60, env=env)
    ports = [free_port() for _ in range(REPLICAS)]

    def serve(i: int) -> subprocess.Popen[bytes]:
        with (tmp_path / f"serve{i}.log").open("ab") as log:  # warnings and errors, read when the test fails
            return subprocess.Popen([*base(i), "serve", "--interval", "0.5", "--workers", "2", "--worker-processes",
                                     "0", "--lease", "2", "--lease-ttl", "2", "--port", str(ports[i])], env=env,
                                    stdout=subprocess.DEVNULL, stderr=log)

    def kill(i: int) -> None:
        replicas[i].send_signal(signal.SIGKILL)
        replicas[i].wait(10)
        replicas[i] = serve(i)

    store = open_store(pg_url)
    writer = RecordService(Engine(store, data_dir=tmp_path / "writer"))
    replicas = [serve(i) for i in range(REPLICAS)]
    kills, instants, in_flight = 0, [], 0
    try:
        until(lambda: leasekit.leader_pid(pg_url) and leasekit.job(pg_url, JOB), timeout=60)  # the leader schedules
        for batch in range(TICKETS // BATCH):
            for _ in range(BATCH):
                writer.create("acme", "ticket", {"title": "t"})
            if batch % 4 == 1:  # five times in the run, a random follower at a random moment
                time.sleep(rng.uniform(0.0, 1.5))
                leading = until(lambda: leasekit.leader_pid(pg_url), timeout=30)  # (between two beats: none)
                kill(rng.choice([i for i, r in enumerate(replicas) if r.pid != leading]))
                kills += 1
            if batch == FIRST_FIRE:
                instants.append(_fire(pg_url, lambda at: at in leasekit.fires(pg_url, "acme/tick")))
            if batch == LEADER_KILL:
                in_flight = _take_over(pg_url, replicas, kill, instants[0])
                kills += 1
                instants.append(_fire(pg_url, lambda at: at in leasekit.fires(pg_url, "acme/tick")))
        _until_succeeded(store, TICKETS, timeout=240)
    finally:
        stop(replicas)
    try:
        with store.read() as conn:
            rows = views.executions_list(conn, workflow="acme/relay", limit=100_000)
            traces = [views.execution(conn, row["id"]) for row in rows]
            tasks = Counter(str(t["ticket"]) for t in record_store.list_records(conn, "acme", "task", limit=100_000))
            tickets = record_store.list_records(conn, "acme", "ticket", limit=100_000)
    finally:
        store.close()
    assert kills == 6 and len(tickets) == TICKETS
    assert in_flight > 0, "the leader was killed with executions running or waiting"
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

    fired = leasekit.fires(pg_url, "acme/tick")
    started = leasekit.scheduled(pg_url, "acme/tick")
    assert sorted(fired) == instants, "the instants made due fired, and no other"
    assert {at: n for at, n in fired.items() if n[1] != 1} == {}, "each fire instant has exactly one execution"
    assert sorted(started) == [at.isoformat() for at in instants] and set(started.values()) == {1}, started
    assert fired[instants[0]][0] < fired[instants[1]][0], "the second instant fired under the new lease"


def _fire(url: str, done: Callable[[datetime], bool]) -> datetime:
    """Make the tick job due a second ago and wait until ``done`` with that instant; the instant.

    A scheduler that registers the job just then (a replica that took the lease) writes back the next run
    it read before the edit: then the edit is made again. Any other next run is left as it is.
    """
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    before = leasekit.job(url, JOB)
    leasekit.job(url, JOB, due=at)
    deadline = time.monotonic() + 30
    while not done(at):
        assert time.monotonic() < deadline, f"the instant {at} did not fire in 30 s"
        if leasekit.job(url, JOB) == before:
            leasekit.job(url, JOB, due=at)
        time.sleep(0.1)
    return at


def _take_over(url: str, replicas: list[subprocess.Popen[bytes]], kill: Callable[[int], None],
               fired: datetime) -> int:
    """kill -9 the leader (restarted as a follower), then make the ``fired`` instant due again, as if the
    leader died before moving its job on; another replica takes the lease and moves the job past that
    instant to the next one of its cadence (without firing it again: checked at the end). Returns how many
    executions were running or waiting at the kill."""
    leading = until(lambda: leasekit.leader_pid(url), timeout=30)
    victim = next(i for i, r in enumerate(replicas) if r.pid == leading)
    in_flight = _in_flight(url)
    killed = time.monotonic()
    kill(victim)
    leasekit.job(url, JOB, due=fired)  # before the take-over: no new leader has registered the job yet
    until(lambda: leasekit.leader_pid(url) not in (None, leading), timeout=30)
    print(f"leader lease taken over {time.monotonic() - killed:.2f} s after kill -9 (ttl 2 s)")  # shown with -s
    until(lambda: (leasekit.job(url, JOB) or 0) > fired.timestamp(), timeout=30)
    assert leasekit.job(url, JOB) == (fired + timedelta(minutes=5)).timestamp(), "moved on by its cadence"
    return in_flight


def _in_flight(url: str) -> int:
    return read_store(url, lambda conn: int(conn.execute(select(func.count()).where(
        executions.c.status.in_(["running", "waiting"]), executions.c.workflow_key == "acme/relay")).scalar_one()))


def _until_succeeded(store: object, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        with store.read() as conn:  # type: ignore[attr-defined]
            done = conn.execute(select(func.count()).where(executions.c.status == "succeeded",
                                                           executions.c.workflow_key == "acme/relay")).scalar_one()
        if done >= expected:
            return
        time.sleep(0.5)
    raise AssertionError(f"only {done} of {expected} executions succeeded in {timeout:g}s")
