"""The engine on a real repository and store: executions, steps, waits, retries, calls, pinning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from enginekit import Kit, kit

WF = "workflows.d/acme/{}.yaml"


def wf(name: str, actions: str, trigger: str = "type: manual\n    entities: [ticket]") -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n  trigger:\n"
            f"    {trigger}\n  actions:\n{actions}")


THREE_STEPS = """\
    - {id: first, type: set, vars: {n: 2}}
    - id: decide
      type: if
      condition: "{{ vars.n > 1 }}"
      then:
        - {id: big, type: set, vars: {size: big}}
      else:
        - {id: small, type: set, vars: {size: small}}
"""


@pytest.fixture
def k(tmp_path: Path, store_url: str) -> Iterator[Kit]:
    with kit(tmp_path, store_url) as made:
        yield made


def test_three_steps_run_and_leave_a_trace(k: Kit) -> None:
    """A set/if/set workflow succeeds with one step row per action run, inputs and outputs recorded."""
    k.deploy({WF.format("three"): wf("three", THREE_STEPS)})
    execution = k.show(k.run("acme/three"))
    assert execution["status"] == "succeeded" and execution["version"] == 1
    assert execution["output"] == {"n": 2, "size": "big"}
    steps = {s["action_id"]: s for s in execution["steps"]}
    assert list(steps) == ["first", "decide", "big"]
    assert steps["decide"]["input"]["condition"] is True and steps["decide"]["output"]["branch"] == "then"
    assert all(s["status"] == "succeeded" and s["attempts"] == 1 for s in steps.values())
    assert execution["duration_ms"] is not None


def test_wait_is_durable_and_resumes_on_time(k: Kit) -> None:
    """A wait parks the execution with a wake-up time; it resumes only once the time has come."""
    actions = "    - {id: before, type: set, vars: {a: 1}}\n    - {id: nap, type: wait, duration: 1h}\n" \
              "    - {id: after, type: set, vars: {b: 2}}\n"
    k.deploy({WF.format("napper"): wf("napper", actions)})
    execution_id = k.run("acme/napper")
    assert k.show(execution_id)["status"] == "waiting"
    k.clock.advance(minutes=59)
    k.engine.run_until_idle()
    assert k.show(execution_id)["status"] == "waiting"
    k.clock.advance(minutes=1)
    k.engine.run_until_idle()
    execution = k.show(execution_id)
    assert execution["status"] == "succeeded" and execution["output"] == {"a": 1, "b": 2}
    assert k.steps(execution_id)["nap"]["wait_seconds"] == 3600


def test_edit_while_waiting_does_not_change_the_execution(k: Kit) -> None:
    """An execution keeps the version it started on; a later one runs the new version."""
    body = "    - {{id: nap, type: wait, duration: 1h}}\n    - {{id: after, type: set, vars: {{v: {v}}}}}\n"
    k.deploy({WF.format("pinned"): wf("pinned", body.format(v=1))})
    old = k.run("acme/pinned")
    k.deploy({WF.format("pinned"): wf("pinned", body.format(v=2))})
    k.clock.advance(hours=1)
    k.engine.run_until_idle()
    assert (k.show(old)["version"], k.show(old)["output"]) == (1, {"v": 1})
    new = k.run("acme/pinned")
    k.clock.advance(hours=1)
    k.engine.run_until_idle()
    assert (k.show(new)["version"], k.show(new)["output"]) == (2, {"v": 2})


def test_missing_placeholder_fails_the_step_naming_it(k: Kit) -> None:
    """An undefined name fails the step with the action id and the placeholder."""
    k.deploy({WF.format("typo"): wf("typo", "    - {id: oops, type: set, vars: {x: '{{ vars.nope }}'}}\n")})
    execution = k.show(k.run("acme/typo"))
    assert execution["status"] == "failed"
    assert "step oops" in execution["error"] and "vars.nope" in execution["error"]
    assert execution["steps"][0]["status"] == "failed"


def test_workflow_call_runs_a_child_and_returns_its_output(k: Kit) -> None:
    """workflow.call starts a child execution, waits for it, and takes its output."""
    child = wf("child", "    - {id: answer, type: set, vars: {doubled: '{{ trigger.input.n * 2 }}'}}\n")
    parent = wf("parent", "    - {id: ask, type: workflow.call, workflow: child, input: {n: 21}}\n"
                          "    - {id: use, type: set, vars: {got: '{{ steps.ask.output.doubled }}'}}\n")
    k.deploy({WF.format("child"): child, WF.format("parent"): parent})
    execution = k.show(k.run("acme/parent"))
    assert execution["status"] == "succeeded" and execution["output"] == {"got": 42}


def test_failed_child_fails_the_parent(k: Kit) -> None:
    """A child that fails fails the calling step and so the parent."""
    child = wf("child", "    - {id: boom, type: set, vars: {x: '{{ nope }}'}}\n")
    parent = wf("parent", "    - {id: ask, type: workflow.call, workflow: child}\n")
    k.deploy({WF.format("child"): child, WF.format("parent"): parent})
    execution = k.show(k.run("acme/parent"))
    assert execution["status"] == "failed" and "called execution" in execution["error"]


def test_retry_and_cancel(k: Kit) -> None:
    """A failed execution can be retried on its version or the latest; only failed/terminated ones."""
    k.deploy({WF.format("flaky"): wf("flaky", "    - {id: boom, type: set, vars: {x: '{{ nope }}'}}\n")})
    failed = k.run("acme/flaky")
    k.deploy({WF.format("flaky"): wf("flaky", "    - {id: fine, type: set, vars: {x: 1}}\n")})
    again = k.engine.retry(failed)
    k.engine.run_until_idle()
    assert k.show(again)["retry_of"] == failed and k.show(again)["status"] == "failed"
    assert k.show(again)["version"] == 1
    latest = k.engine.retry(failed, latest=True)
    k.engine.run_until_idle()
    assert (k.show(latest)["status"], k.show(latest)["version"]) == ("succeeded", 2)
    from controller.errors import UsageError

    with pytest.raises(UsageError, match="only failed or terminated"):
        k.engine.retry(latest)
    k.deploy({WF.format("slow"): wf("slow", "    - {id: nap, type: wait, duration: 1d}\n")})
    waiting = k.run("acme/slow")
    assert k.engine.cancel(waiting) == "terminated"
    assert k.show(waiting)["status"] == "terminated"


def test_disabled_and_deleted_workflows_start_nothing(k: Kit) -> None:
    """A disabled workflow refuses to start; a queued execution of a deleted one is terminated."""
    from controller.errors import GuardError

    k.deploy({WF.format("off"): wf("off", THREE_STEPS).replace("spec:\n", "spec:\n  enabled: false\n")})
    with pytest.raises(GuardError, match="disabled"):
        k.engine.start("acme/off", {"type": "manual"})
    k.deploy({WF.format("gone"): wf("gone", THREE_STEPS)})
    queued = k.engine.start("acme/gone", {"type": "manual"})
    k.deploy({WF.format("gone"): None})
    k.engine.run_until_idle()
    assert k.show(queued)["status"] == "terminated"


def test_dead_worker_lease_expires_and_another_resumes(k: Kit) -> None:
    """An execution claimed by a worker that died is picked up after its lease and finishes."""
    from controller.engine import queue

    k.deploy({WF.format("three"): wf("three", THREE_STEPS)})
    execution_id = k.engine.start("acme/three", {"type": "manual"})
    with k.store.tx() as conn:
        assert queue.claim(conn, "dead-worker", k.clock.now(), k.engine.lease, 10) == [execution_id]
    assert k.engine.run_until_idle() == 0  # still leased
    k.clock.advance(seconds=k.engine.lease.total_seconds() + 1)
    k.engine.run_until_idle()
    assert k.show(execution_id)["status"] == "succeeded"
