"""The claim and the load on a real store (SQLite and PostgreSQL): the oldest runnable work of every kind,
leases and row locks respected, steps read only for executions that have run, effects made only when a step
has one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from enginekit import Kit, kit

from controller.engine import queue
from controller.engine.runtime import Engine, live_effects
from controller.store import open_store

WF = "workflows.d/acme/{}.yaml"


def wf(name: str, actions: str) -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n"
            f"  trigger: {{type: manual, entities: [ticket]}}\n  actions:\n{actions}")


FILES = {
    WF.format("nap"): wf("nap", "    - {id: pause, type: wait, duration: 1h}\n    - {id: done, type: set, vars: {a: 1}}\n"),
    WF.format("two"): wf("two", "    - {id: one, type: set, vars: {a: 1}}\n    - {id: two, type: set, vars: {b: 2}}\n"),
    WF.format("quick"): wf("quick", "    - {id: done, type: set, vars: {ok: true}}\n"),
}


@pytest.fixture
def k(tmp_path: Path, store_url: str) -> Iterator[Kit]:
    with kit(tmp_path, store_url) as made:
        made.deploy(FILES)
        yield made


def claim(k: Kit, owner: str, limit: int) -> list[int]:
    with k.store.tx() as conn:
        return queue.claim(conn, owner, k.clock.now(), k.engine.lease, limit)


def test_the_claim_takes_the_oldest_runnable_work_of_every_kind(k: Kit) -> None:
    """A due wait, a released running execution and queued ones: a small batch takes the oldest two whatever
    their kind, the next one the rest; an execution not due, or under another worker's lease, is left alone."""
    due = k.run("acme/nap")  # waiting for an hour
    k.clock.advance(minutes=30)
    later = k.run("acme/nap")
    stopped = k.engine.start("acme/two", {"type": "manual"})
    assert k.engine.run_pending(stop=lambda: True) == 1  # stopped before its first step: running, released
    assert k.show(stopped)["status"] == "running"
    queued = [k.engine.start("acme/quick", {"type": "manual"}) for _ in range(3)]
    k.clock.advance(minutes=31)  # the first wait is due, the second is not
    assert claim(k, "w1", 2) == [due, stopped]
    assert claim(k, "w2", 10) == queued
    assert claim(k, "w3", 10) == []
    k.clock.advance(seconds=k.engine.lease.total_seconds() + 1)  # w1 and w2 died
    assert claim(k, "w4", 10) == [due, stopped, *queued]
    assert k.show(later)["status"] == "waiting"


def test_a_claim_passes_over_rows_another_claim_holds_until_it_commits(k: Kit, store_url: str) -> None:
    """PostgreSQL: a claim in progress in another transaction holds its rows; a second claim skips them without
    waiting and takes the next ones, so two replicas never share an execution."""
    if not store_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; on SQLite claims take turns on the write lock")
    ids = [k.engine.start("acme/quick", {"type": "manual"}) for _ in range(4)]
    other = open_store(store_url)
    try:
        with other.tx() as held:
            first = queue.claim(held, "w1", k.clock.now(), k.engine.lease, 2)
            second = claim(k, "w2", 10)
        assert (first, second) == (ids[:2], ids[2:])
    finally:
        other.close()


def test_load_reads_steps_only_of_executions_that_have_run(k: Kit) -> None:
    """A queued execution has no steps; one that ran comes back with its steps as they were written."""
    ran = k.run("acme/nap")
    queued = k.engine.start("acme/quick", {"type": "manual"})
    with k.store.read() as conn:
        waiting, fresh = queue.load_many(conn, [ran, queued])
    assert (waiting.status, fresh.status) == ("waiting", "queued")
    assert list(waiting.steps) == ["pause"] and fresh.steps == {}
    pause = waiting.steps["pause"]
    assert (pause.status, pause.stored, pause.dirty) == ("waiting", True, False)
    assert pause.wake_at is not None and pause.wake_at > k.clock.now()
    assert fresh.trigger == {"type": "manual"} and fresh.version is None


def test_effects_are_made_only_for_a_step_that_has_one(tmp_path: Path, store_url: str) -> None:
    """Pure steps never make the live effects; an execution with record writes makes them once."""
    made: list[int] = []

    def counting(engine: Engine, ex: Any) -> Any:
        made.append(ex.id)
        return live_effects(engine, ex)

    records = ("    - {id: a, type: record.create, entity: task, set: {title: one}}\n"
               "    - {id: b, type: record.create, entity: task, set: {title: two}}\n")
    with kit(tmp_path, store_url, effects=counting) as k:
        k.deploy({**FILES, WF.format("records"): wf("records", records)})
        pure = k.run("acme/two")
        writes = k.run("acme/records")
        assert (k.show(pure)["status"], k.show(writes)["status"]) == ("succeeded", "succeeded")
    assert made == [writes]
