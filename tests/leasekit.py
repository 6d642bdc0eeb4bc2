"""Looking at leadership and schedule jobs from outside the `wfctl serve` processes that share one store.

Used by tests/test_leadership.py, tests/test_scale_out.py and tests/bench/bench_takeover.py: who leads
(the lease's view, as `wfctl status` shows it), a schedule job's next run in APScheduler's job table, a
job made due at an instant (as the scheduler of a replica would leave it), and the instants fired.
"""

from __future__ import annotations

import pickle
from collections import Counter
from datetime import datetime

from enginekit import read_store
from sqlalchemy import create_engine, select, text

from controller.store.leadership import recent
from controller.store.tables import executions, schedule_fires, workflows

TICK = """apiVersion: workflows/v1
kind: Workflow
metadata: {name: tick}
spec:
  trigger: {type: schedule, every: 5m}
  actions:
    - {id: note, type: set, vars: {at: "{{ trigger.scheduled_at }}"}}
"""
JOB = "schedule:acme/tick"
"""The job of the schedule workflow ``TICK`` (every 5 minutes; tests make it due by editing its row)."""

def replicas(url: str) -> list[dict[str, object]]:
    """The replicas seen recently, leader first (``wfctl status --json``'s list)."""
    return read_store(url, recent)


def leader_pid(url: str) -> int | None:
    """The pid of the replica holding the unexpired lease, if any."""
    return next((int(r["pid"]) for r in replicas(url) if r["role"] == "leader"), None)  # type: ignore[call-overload]


def job(url: str, job_id: str, due: datetime | None = None) -> float | None:
    """The job's next run (epoch seconds), None before a scheduler registered it; with ``due``, first make it due
    at that instant, as the scheduler of a replica would leave it (the indexed column and the pickled state)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            row = conn.execute(text("SELECT job_state, next_run_time FROM apscheduler_jobs WHERE id = :id"),
                               {"id": job_id}).first()
            if row is None or due is None:
                return row.next_run_time if row is not None else None
            state = pickle.loads(row.job_state)
            state["next_run_time"] = due
            conn.execute(text("UPDATE apscheduler_jobs SET job_state = :state, next_run_time = :at WHERE id = :id"),
                         {"state": pickle.dumps(state), "at": due.timestamp(), "id": job_id})
            return due.timestamp()
    finally:
        engine.dispose()


def fires(url: str, workflow_key: str | None = None) -> dict[datetime, tuple[int, int]]:
    """fire instant -> (generation of the leader that fired it, executions started for that instant); of one
    workflow's schedule with ``workflow_key``."""
    def read(conn: object) -> dict[datetime, tuple[int, int]]:
        fired_q, started_q = select(schedule_fires), select(executions.c.trigger)
        if workflow_key is not None:
            started_q = started_q.where(executions.c.workflow_key == workflow_key)
            fired_q = fired_q.join(workflows, workflows.c.id == schedule_fires.c.workflow_id).where(
                workflows.c.key == workflow_key)
        fired = {row.fire_at: row.generation for row in conn.execute(fired_q)}  # type: ignore[attr-defined]
        started = Counter(t.get("scheduled_at") for t in conn.execute(started_q).scalars())  # type: ignore[attr-defined]
        return {at: (generation, started[at.isoformat()]) for at, generation in fired.items()}
    return read_store(url, read)


def scheduled(url: str, workflow_key: str) -> Counter[str]:
    """How many executions of the schedule workflow were started for each instant (``scheduled_at``)."""
    def read(conn: object) -> Counter[str]:
        triggers = conn.execute(select(executions.c.trigger)  # type: ignore[attr-defined]
                                .where(executions.c.workflow_key == workflow_key)).scalars()
        return Counter(str(t.get("scheduled_at")) for t in triggers)
    return read_store(url, read)
