"""Concurrency limits (``spec.concurrency``): at most N executions of a workflow running or waiting.

Driven through the real engine on a git repository and a store (SQLite and PostgreSQL): the
``queue`` behavior holds executions back at the claim, ``drop`` drops and counts at admission,
``cancel-oldest`` terminates the oldest to admit the new one; one claim batch never starts more
than the free slots, and two engines (two processes' worth of connection pools) over one store,
claiming in turn or at the same moment, never exceed the limit.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from enginekit import Kit, kit
from gitutil import commit_files, make_repo
from sqlalchemy import Connection, select

from controller.cli import cli
from controller.engine import concurrency, queue
from controller.engine.admission import Request
from controller.engine.lifecycle import Transition
from controller.engine.queue import ExecutionRow
from controller.engine.runtime import Engine
from controller.errors import RateLimited
from controller.model.statuses import IN_FLIGHT, ordered
from controller.store import Store, open_store, views
from controller.store.tables import executions, workflow_versions

WF = "workflows.d/acme/{}.yaml"
NAP = "    - {id: pause, type: wait, duration: 1h}\n    - {id: done, type: set, vars: {ok: true}}\n"
QUICK = "    - {id: done, type: set, vars: {ok: true}}\n"


def wf(name: str, concurrency_spec: str | None = "{limit: 2}", actions: str = NAP) -> str:
    limit = f"  concurrency: {concurrency_spec}\n" if concurrency_spec else ""
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n"
            f"  trigger: {{type: manual, entities: [ticket]}}\n{limit}  actions:\n{actions}")


@pytest.fixture
def k(tmp_path: Path, store_url: str) -> Iterator[Kit]:
    with kit(tmp_path, store_url) as made:
        yield made


def wire_cancel_oldest(engine: Engine) -> None:
    """What Engine.__init__ wires: the engine's lifecycle terminates the oldest for admission."""
    engine.admission.cancel_oldest = lambda conn, workflow_id, reason: concurrency.terminate_oldest(
        engine.lifecycle, conn, workflow_id, engine.clock.now(), reason)


def statuses(store: Store, key: str) -> dict[int, str]:
    e = executions.c
    with store.read() as conn:
        return {int(i): str(s) for i, s in conn.execute(select(e.id, e.status).where(e.workflow_key == key)
                                                       .order_by(e.id))}


def counts(store: Store, key: str) -> Counter[str]:
    return Counter(statuses(store, key).values())


def taken(store: Store, key: str, now: Any) -> int:
    """Slots taken as the claim counts them: running or waiting, or queued under a live lease."""
    e = executions.c
    with store.read() as conn:
        workflow_id = conn.execute(select(e.workflow_id).where(e.workflow_key == key).limit(1)).scalar()
        return queue.taken_slots(conn, [workflow_id], now).get(workflow_id, 0) if workflow_id else 0


class InFlightWatch:
    """Lifecycle hook: the most executions of ``key`` ever running or waiting at a committed move."""

    def __init__(self, key: str) -> None:
        self.key, self.most = key, 0

    def __call__(self, conn: Connection, ex: ExecutionRow, move: Transition) -> None:
        if ex.workflow_key != self.key:
            return
        e = executions.c
        n = len(list(conn.execute(select(e.id).where(e.workflow_key == self.key, e.status.in_(ordered(IN_FLIGHT))))))
        self.most = max(self.most, n)


def run_checked(k: Kit, key: str, limit: int, engines: list[Engine] | None = None) -> None:
    """Run until idle, the engines in turn, in batches of one and of ten by turns; after every batch no more than
    ``limit`` slots are taken."""
    engines = engines or [k.engine]
    idle = turn = 0
    while idle < len(engines):
        engine = engines[turn % len(engines)]
        ran = engine.run_pending(limit=1 if (turn // len(engines)) % 2 else 10)
        turn += 1
        idle = 0 if ran else idle + 1
        assert taken(k.store, key, k.clock.now()) <= limit


# -- queue (the default) --------------------------------------------------------------------------


def test_queue_holds_executions_beyond_the_limit_until_a_slot_frees(k: Kit) -> None:
    """limit 2, five starts: two run (and wait), three stay queued; as slots free the queued ones start in order,
    and at no committed move are more than two running or waiting."""
    k.deploy({WF.format("x"): wf("x")})
    watch = InFlightWatch("acme/x")
    k.engine.lifecycle.register(watch)
    ids = [k.engine.start("acme/x", {"type": "manual"}) for _ in range(5)]
    k.engine.run_until_idle()
    assert statuses(k.store, "acme/x") == {ids[0]: "waiting", ids[1]: "waiting", ids[2]: "queued", ids[3]: "queued",
                                           ids[4]: "queued"}
    k.clock.advance(hours=1)
    run_checked(k, "acme/x", 2)
    assert counts(k.store, "acme/x") == {"succeeded": 2, "waiting": 2, "queued": 1}
    assert statuses(k.store, "acme/x")[ids[4]] == "queued"
    k.clock.advance(hours=1)
    run_checked(k, "acme/x", 2)
    assert counts(k.store, "acme/x") == {"succeeded": 4, "waiting": 1}
    k.clock.advance(hours=1)
    run_checked(k, "acme/x", 2)
    assert counts(k.store, "acme/x") == {"succeeded": 5}
    assert watch.most == 2
    started = [k.show(i)["started_at"] for i in ids]
    assert started == sorted(started)  # oldest first


def test_the_normalized_definition_keeps_concurrency_with_its_default_behavior(k: Kit) -> None:
    """What the reconcile stores (and admission and the claim read) is spec.concurrency, behavior filled in."""
    k.deploy({WF.format("x"): wf("x")})
    v = workflow_versions.c
    with k.store.read() as conn:
        content = conn.execute(select(v.content)).scalar_one()
    assert content["spec"]["concurrency"] == {"limit": 2, "behavior": "queue"}
    assert concurrency.of(content) == concurrency.Concurrency(2, "queue")
    assert concurrency.of({"spec": {}}) is None


# -- drop -----------------------------------------------------------------------------------------


def test_drop_refuses_the_trigger_beyond_the_limit_and_counts_it(k: Kit) -> None:
    """limit 2 drop: queued executions count too (each takes a slot as soon as it can); the third start is dropped
    with the reason, as a RateLimited (429 / exit 3), and shows in the workflow's `dropped`."""
    k.deploy({WF.format("x"): wf("x", "{limit: 2, behavior: drop}")})
    first = [k.engine.start("acme/x", {"type": "manual"}) for _ in range(2)]
    reason = ("acme/x is at its concurrency limit (2 queued, running or waiting); the trigger was dropped and "
              "counted")
    with pytest.raises(RateLimited) as raised:
        k.engine.start("acme/x", {"type": "manual"})
    assert (raised.value.message, raised.value.workflow) == (reason, "acme/x")
    assert raised.value.retry_after == concurrency.RETRY_AFTER
    k.engine.run_until_idle()
    assert statuses(k.store, "acme/x") == dict.fromkeys(first, "waiting")
    with pytest.raises(RateLimited, match="at its concurrency limit"):
        k.engine.start("acme/x", {"type": "manual"})
    with k.store.read() as conn:
        assert views.workflow(conn, "acme/x")["dropped"] == 2
    k.clock.advance(hours=1)
    k.engine.run_until_idle()
    third = k.engine.start("acme/x", {"type": "manual"})  # slots are free again
    k.engine.run_until_idle()
    assert counts(k.store, "acme/x") == {"succeeded": 2, "waiting": 1} and statuses(k.store, "acme/x")[third] == "waiting"


def test_concurrent_drop_admissions_across_stores_never_pass_a_full_limit(k: Kit, store_url: str) -> None:
    """Six admissions at the same moment, each through its own store (pool) as six processes would: exactly two
    start. On PostgreSQL the per-workflow advisory lock makes them count in turn."""
    k.deploy({WF.format("x"): wf("x", "{limit: 2, behavior: drop}")})
    stores = [open_store(store_url) for _ in range(6)]
    engines = [Engine(s, data_dir=k.data_dir, clock=k.clock) for s in stores]
    outcomes = race([lambda e=e: _try_start(e, "acme/x") for e in engines])  # type: ignore[misc]
    for s in stores:
        s.close()
    assert sorted(outcomes) == ["dropped"] * 4 + ["started"] * 2
    with k.store.read() as conn:
        assert views.workflow(conn, "acme/x")["dropped"] == 4


def _try_start(engine: Engine, key: str) -> str:
    try:
        engine.start(key, {"type": "manual"})
    except RateLimited:
        return "dropped"
    return "started"


# -- cancel-oldest --------------------------------------------------------------------------------


def test_cancel_oldest_terminates_the_oldest_waiting_execution_and_runs_the_new_one(k: Kit) -> None:
    """limit 2 cancel-oldest with two waiting: a third start terminates the oldest (with the reason) and runs."""
    k.deploy({WF.format("x"): wf("x", "{limit: 2, behavior: cancel-oldest}")})
    wire_cancel_oldest(k.engine)
    a, b = (k.engine.start("acme/x", {"type": "manual"}) for _ in range(2))
    k.engine.run_until_idle()
    verdict = k.engine.admit(Request("acme/x", "manual", {"type": "manual"}))
    c = verdict.execution()
    assert verdict.reason == f"at its concurrency limit (2): execution(s) {a} terminated to make room"
    oldest = k.show(a)
    assert oldest["status"] == "terminated" and oldest["failure"] == "guard"
    assert oldest["error"] == (f"terminated to make room for execution {c}: acme/x allows 2 at a time "
                               f"(spec.concurrency behavior cancel-oldest)")
    k.engine.run_until_idle()
    assert statuses(k.store, "acme/x") == {a: "terminated", b: "waiting", c: "waiting"}
    k.clock.advance(hours=1)
    k.engine.run_until_idle()
    assert statuses(k.store, "acme/x") == {a: "terminated", b: "succeeded", c: "succeeded"}


def test_cancel_oldest_counts_queued_executions_and_keeps_the_newest(k: Kit) -> None:
    """Five starts before any worker runs, limit 2: the three oldest are terminated while still queued."""
    k.deploy({WF.format("x"): wf("x", "{limit: 2, behavior: cancel-oldest}")})
    wire_cancel_oldest(k.engine)
    ids = [k.engine.start("acme/x", {"type": "manual"}) for _ in range(5)]
    k.engine.run_until_idle()
    assert statuses(k.store, "acme/x") == {**dict.fromkeys(ids[:3], "terminated"), ids[3]: "waiting",
                                           ids[4]: "waiting"}


def test_cancel_oldest_asks_a_leased_execution_to_cancel_and_holds_the_new_one_until_it_ends(k: Kit) -> None:
    """An execution a worker holds under a live lease is not written over: it is asked to cancel (its worker
    terminates it), and the new one waits for its slot meanwhile."""
    k.deploy({WF.format("x"): wf("x", "{limit: 2, behavior: cancel-oldest}")})
    wire_cancel_oldest(k.engine)
    a, b = (k.engine.start("acme/x", {"type": "manual"}) for _ in range(2))
    with k.store.tx() as conn:  # another worker took both and is about to run them
        assert queue.claim(conn, "worker-x", k.clock.now(), k.engine.lease, 10) == [a, b]
    c = k.engine.start("acme/x", {"type": "manual"})
    with k.store.read() as conn:
        flags = {int(i): bool(f) for i, f in conn.execute(select(executions.c.id, executions.c.cancel_requested))}
    assert flags == {a: True, b: False, c: False}
    assert k.engine.run_until_idle() == 0  # both slots are held by worker-x
    k.clock.advance(seconds=k.engine.lease.total_seconds() + 1)  # worker-x died: its leases run out
    k.engine.run_until_idle()
    assert statuses(k.store, "acme/x") == {a: "terminated", b: "waiting", c: "waiting"}
    assert k.show(a)["error"] == "cancelled"


def test_cancel_oldest_stops_the_calls_of_the_execution_it_terminates(k: Kit) -> None:
    """A terminated caller takes its called execution (waiting on its own step) with it."""
    k.deploy({WF.format("callee"): wf("callee", None),
              WF.format("caller"): wf("caller", "{limit: 1, behavior: cancel-oldest}",
                                      "    - {id: ask, type: workflow.call, workflow: callee}\n")})
    wire_cancel_oldest(k.engine)
    first = k.run("acme/caller")
    child = k.show(first)["steps"][0]["output"]["execution_id"]
    assert (k.show(first)["status"], k.show(child)["status"]) == ("waiting", "waiting")
    second = k.engine.start("acme/caller", {"type": "manual"})
    assert (k.show(first)["status"], k.show(child)["status"]) == ("terminated", "terminated")
    assert k.show(child)["error"].startswith(f"its caller, execution {first}, was terminated: ")
    k.engine.run_until_idle()
    assert k.show(second)["status"] == "waiting"


def test_cancel_oldest_without_an_engine_queues(k: Kit) -> None:
    """An Admission with no cancel_oldest (no lifecycle to terminate with) falls back to queue."""
    k.deploy({WF.format("x"): wf("x", "{limit: 1, behavior: cancel-oldest}")})
    k.engine.admission.cancel_oldest = None
    ids = [k.engine.start("acme/x", {"type": "manual"}) for _ in range(2)]
    k.engine.run_until_idle()
    assert statuses(k.store, "acme/x") == {ids[0]: "waiting", ids[1]: "queued"}


# -- the claim ------------------------------------------------------------------------------------


def test_one_claim_batch_starts_no_more_than_the_free_slots(k: Kit) -> None:
    """Five queued executions of a limit-2 workflow in one batch of ten: two are claimed (and count as taken
    while leased), an unlimited workflow's later work is claimed with them, and a second claimer gets none."""
    k.deploy({WF.format("x"): wf("x"), WF.format("free"): wf("free", None)})
    ids = [k.engine.start("acme/x", {"type": "manual"}) for _ in range(5)]
    other = k.engine.start("acme/free", {"type": "manual"})
    now = k.clock.now()
    with k.store.tx() as conn:
        assert queue.claim(conn, "w1", now, k.engine.lease, 10) == [ids[0], ids[1], other]
    with k.store.tx() as conn:
        assert queue.claim(conn, "w2", now, k.engine.lease, 10) == []


def test_a_full_limited_workflow_does_not_starve_the_others(k: Kit) -> None:
    """With both slots taken, the limited workflow's older queued work is passed over, even by a batch of one."""
    k.deploy({WF.format("x"): wf("x"), WF.format("free"): wf("free", None, QUICK)})
    ids = [k.engine.start("acme/x", {"type": "manual"}) for _ in range(4)]
    k.engine.run_until_idle()
    assert counts(k.store, "acme/x") == {"waiting": 2, "queued": 2}
    other = k.engine.start("acme/free", {"type": "manual"})
    with k.store.tx() as conn:
        assert queue.claim(conn, "w1", k.clock.now(), k.engine.lease, 1) == [other]
    k.clock.advance(seconds=k.engine.lease.total_seconds() + 1)
    k.engine.run_until_idle()
    assert k.show(other)["status"] == "succeeded"
    assert statuses(k.store, "acme/x")[ids[2]] == "queued"


def test_a_waiting_execution_and_queued_ones_share_the_slots(k: Kit) -> None:
    """limit 2 with one waiting: a batch of ten claims one queued execution."""
    k.deploy({WF.format("x"): wf("x")})
    first = k.run("acme/x")
    ids = [k.engine.start("acme/x", {"type": "manual"}) for _ in range(4)]
    with k.store.tx() as conn:
        assert queue.claim(conn, "w1", k.clock.now(), k.engine.lease, 10) == [ids[0]]
    assert statuses(k.store, "acme/x")[first] == "waiting"


# -- across processes -----------------------------------------------------------------------------


def test_two_engines_over_one_store_never_exceed_the_limit(k: Kit, store_url: str) -> None:
    """Two engines, each with its own pool on the same database (two processes), start and claim in turn."""
    k.deploy({WF.format("x"): wf("x")})
    other_store = open_store(store_url)
    try:
        other = Engine(other_store, data_dir=k.data_dir, clock=k.clock)
        watch = InFlightWatch("acme/x")
        for engine in (k.engine, other):
            engine.lifecycle.register(watch)
        for n in range(6):
            (k.engine if n % 2 else other).start("acme/x", {"type": "manual"})
        run_checked(k, "acme/x", 2, [k.engine, other])
        assert counts(k.store, "acme/x") == {"waiting": 2, "queued": 4}
        for _ in range(3):
            k.clock.advance(hours=1)
            run_checked(k, "acme/x", 2, [other, k.engine])
        assert counts(k.store, "acme/x") == {"succeeded": 6}
        assert watch.most == 2
    finally:
        other_store.close()


def test_simultaneous_claims_from_several_stores_take_only_the_free_slots(k: Kit, store_url: str) -> None:
    """Four claimers at the same moment, each on its own pool: together they lease exactly the two free slots
    (SQLite serialises them; on PostgreSQL the advisory lock does, where SKIP LOCKED alone would not)."""
    k.deploy({WF.format("x"): wf("x")})
    ids = [k.engine.start("acme/x", {"type": "manual"}) for _ in range(6)]
    stores = [open_store(store_url) for _ in range(4)]
    now = k.clock.now()

    def claimer(store: Store, n: int) -> Callable[[], list[int]]:
        def go() -> list[int]:
            with store.tx() as conn:
                return queue.claim(conn, f"w{n}", now, k.engine.lease, 10)
        return go

    try:
        claimed = race([claimer(s, n) for n, s in enumerate(stores)])
    finally:
        for s in stores:
            s.close()
    assert sorted(i for batch in claimed for i in batch) == ids[:2]


def test_a_claim_passes_over_a_second_limited_workflow_whose_lock_is_taken(k: Kit, store_url: str) -> None:
    """PostgreSQL: the claim waits only for its first workflow lock; one of a later limited workflow that another
    transaction holds means that workflow starts nothing in this batch (no deadlock with an admission holding
    several), and the next claim takes it."""
    if not store_url.startswith("postgresql"):
        pytest.skip("advisory locks are PostgreSQL's; SQLite serialises writers")
    k.deploy({WF.format("a"): wf("a"), WF.format("b"): wf("b")})
    a = k.engine.start("acme/a", {"type": "manual"})
    b = k.engine.start("acme/b", {"type": "manual"})
    with k.store.read() as conn:
        b_id = conn.execute(select(executions.c.workflow_id).where(executions.c.id == b)).scalar_one()
    holder = open_store(store_url)
    try:
        with holder.tx() as held:
            queue.lock_workflow(held, b_id)  # an admission of acme/b in progress elsewhere
            with k.store.tx() as conn:
                assert queue.claim(conn, "w1", k.clock.now(), k.engine.lease, 10) == [a]
        with k.store.tx() as conn:
            assert queue.claim(conn, "w1", k.clock.now(), k.engine.lease, 10) == [b]
    finally:
        holder.close()


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` in threads released together; their results (a thread's exception is raised here)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        barrier.wait()
        try:
            results[n] = calls[n]()
        except BaseException as error:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


# -- validation -----------------------------------------------------------------------------------


def test_a_limit_below_one_is_a_located_error(tmp_path: Path) -> None:
    """`wfctl validate` points at spec.concurrency.limit (path:line:col) and exits 1; a bad behavior lists the
    allowed ones."""
    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {WF.format("x"): wf("x", "{limit: 0}"),
                                   WF.format("y"): wf("y", "{limit: 1, behavior: wait}")}, "limits")
    result = CliRunner().invoke(cli, ["--repo", str(repo), "--data-dir", str(tmp_path / "data"), "validate"],
                                catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[:2] == [
        "workflows.d/acme/x.yaml:7:17: spec.concurrency.limit: must be at least 1",
        "workflows.d/acme/y.yaml:7:27: spec.concurrency.behavior: 'wait' is not one of: queue, drop, cancel-oldest"]
