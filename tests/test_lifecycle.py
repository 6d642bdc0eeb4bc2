"""The one way out: every status change of an execution goes through lifecycle.transition and its hooks.

A recording hook is registered on the engine's lifecycle (our own seam); each way an execution can
end — success, failure, cancel (queued, waiting, running), terminate on delete, a dead worker's
lease running out — must reach it exactly once, in the transaction that writes the final state.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from enginekit import Kit, kit
from sqlalchemy import Connection

from controller.engine import queue
from controller.engine.lifecycle import LifecycleError, Transition, transition
from controller.engine.queue import ExecutionRow
from controller.engine.starting import start_now
from controller.model.statuses import ExecutionStatus

WF = "workflows.d/acme/{}.yaml"
ROOT = Path(__file__).resolve().parent.parent


def wf(name: str, actions: str) -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n"
            f"  trigger: {{type: manual, entities: [ticket]}}\n  actions:\n{actions}")


WORKFLOWS = {
    "ok": wf("ok", "    - {id: a, type: set, vars: {x: 1}}\n"),
    "bad": wf("bad", "    - {id: a, type: set, vars: {x: '{{ nope }}'}}\n"),
    "nap": wf("nap", "    - {id: a, type: wait, duration: 1h}\n    - {id: b, type: set, vars: {x: 1}}\n"),
    "parent": wf("parent", "    - {id: call, type: workflow.call, workflow: ok}\n"),
}


class Recorder:
    def __init__(self) -> None:
        self.moves: list[Transition] = []
        self.committed_status: list[str] = []

    def __call__(self, conn: Connection, ex: ExecutionRow, move: Transition) -> None:
        self.moves.append(move)
        from sqlalchemy import select

        from controller.store.tables import executions

        # The hook runs in the transaction that writes the move: the row already says so.
        self.committed_status.append(conn.execute(select(executions.c.status)
                                                  .where(executions.c.id == ex.id)).scalar_one())

    def finals(self, execution_id: int) -> list[str]:
        return [m.after for m in self.moves if m.execution_id == execution_id and m.final]


@pytest.fixture
def k(tmp_path: Path, store_url: str) -> Iterator[Kit]:
    with kit(tmp_path, store_url) as k:
        k.deploy({WF.format(name): text for name, text in WORKFLOWS.items()})
        yield k


@pytest.fixture
def hook(k: Kit) -> Recorder:
    recorder = Recorder()
    k.engine.lifecycle.register(recorder)
    return recorder


def worker_starts(k: Kit, execution_id: int) -> None:
    """Another worker claims the execution and writes it running (and nothing more, for now)."""
    with k.store.tx() as conn:
        assert queue.claim(conn, "worker-x", k.clock.now(), k.engine.lease, 10) == [execution_id]
        ex = queue.load(conn, execution_id)
        transition(ex, ExecutionStatus.RUNNING, k.clock.now())
        queue.save(conn, ex, k.clock.now(), release=False)


def test_success_and_failure_pass_through_the_hook(k: Kit, hook: Recorder) -> None:
    """queued -> running -> succeeded, and queued -> running -> failed, each move seen once."""
    ok, bad = k.run("acme/ok"), k.run("acme/bad")
    assert [(m.before, m.after) for m in hook.moves if m.execution_id == ok] == [
        ("queued", "running"), ("running", "succeeded")]
    assert hook.finals(bad) == ["failed"]
    # A hook runs once the row is written: the row holds the state of the last move of the segment.
    assert [c for c, m in zip(hook.committed_status, hook.moves, strict=True) if m.final] == ["succeeded", "failed"]


def test_cancel_of_queued_waiting_and_running_executions(k: Kit, hook: Recorder) -> None:
    """An operator's cancel ends a queued and a waiting execution at once, a running one at its next step."""
    queued = start_now(k.engine, "acme/ok")
    assert k.engine.cancel(queued) == "terminated"
    waiting = k.run("acme/nap")
    assert k.engine.cancel(waiting) == "terminated"
    running = start_now(k.engine, "acme/nap")
    worker_starts(k, running)
    assert k.engine.cancel(running) == "cancelling"
    k.engine.run_one(running)
    assert [hook.finals(i) for i in (queued, waiting, running)] == [["terminated"]] * 3
    assert k.show(running)["error"] == "cancelled"


def test_a_queued_execution_of_a_deleted_workflow_is_terminated_through_the_hook(k: Kit, hook: Recorder) -> None:
    """Deletes stop new work: the queued execution ends terminated, and the hook sees it."""
    queued = start_now(k.engine, "acme/ok")
    k.deploy({WF.format("ok"): None})
    k.engine.run_until_idle()
    assert hook.finals(queued) == ["terminated"]
    assert "deleted" in k.show(queued)["error"]


def test_a_dead_workers_execution_resumes_and_ends_through_the_hook(k: Kit, hook: Recorder) -> None:
    """After the lease runs out another worker resumes (running -> running) and finishes it."""
    execution = start_now(k.engine, "acme/ok")
    worker_starts(k, execution)  # and dies
    assert k.engine.run_until_idle() == 0
    k.clock.advance(seconds=k.engine.lease.total_seconds() + 1)
    k.engine.run_until_idle()
    assert [(m.before, m.after) for m in hook.moves if m.execution_id == execution] == [
        ("running", "running"), ("running", "succeeded")]


def test_a_finished_child_wakes_its_parent_through_the_hook(k: Kit, hook: Recorder) -> None:
    """Parent wake-up is a lifecycle hook: the child's end completes the parent's call step."""
    parent = k.run("acme/parent")
    child = k.show(parent)["steps"][0]["output"]
    assert k.show(parent)["status"] == "succeeded"
    assert hook.finals(parent) == ["succeeded"] and len([m for m in hook.moves if m.final]) == 2
    assert child == {"x": 1}


def test_a_move_the_lifecycle_does_not_allow_is_refused(k: Kit) -> None:
    """succeeded is final: nothing moves it again."""
    execution = k.run("acme/ok")
    with k.store.read() as conn:
        ex = queue.load(conn, execution)
    with pytest.raises(LifecycleError, match="cannot go from succeeded to running"):
        transition(ex, ExecutionStatus.RUNNING, k.clock.now())


def test_no_code_sets_an_execution_status_but_the_lifecycle() -> None:
    """Outside lifecycle.py, no assignment writes ``<execution>.status`` (steps have their own status)."""
    offenders = []
    for path in sorted((ROOT / "controller").rglob("*.py")):
        if path.name == "lifecycle.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
                if isinstance(node, ast.AugAssign | ast.AnnAssign) else []
            for target in targets:
                for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if isinstance(element, ast.Attribute) and element.attr == "status" \
                            and "step" not in ast.unparse(element.value):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(element)}")
    assert offenders == []


def test_a_batch_past_its_budget_gives_the_rest_back_unstarted(k: Kit, hook: Recorder) -> None:
    """run_pending(budget=0) runs the first claimed execution and releases the others as they were."""
    ids = [start_now(k.engine, "acme/ok") for _ in range(3)]
    assert k.engine.run_pending(limit=3, budget=0) == 1
    assert hook.finals(ids[0]) == ["succeeded"]
    assert [k.show(i)["status"] for i in ids[1:]] == ["queued", "queued"]
    assert not [m for m in hook.moves if m.execution_id in ids[1:]]  # no move of theirs was written
    with k.store.tx() as conn:  # free for any worker at once
        assert queue.claim(conn, "worker-x", k.clock.now(), k.engine.lease, 10) == ids[1:]
