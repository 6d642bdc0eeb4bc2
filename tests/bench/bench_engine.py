"""Engine throughput: executions of a three-step workflow (set, if, set) on SQLite, every step row persisted.

    python tests/bench/bench_engine.py [--executions 10000] [--workers 2] [--rate 400] [--db URL] [--no-rollup]

Two figures: the drain rate of a queue of N executions enqueued at once, and trigger-to-finish
latency (p50/p99) under a steady trigger rate below that. ``--no-rollup`` leaves the metrics rollup
out of the lifecycle (to measure what it costs). Not part of the default test run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gitutil import commit_files, make_repo
from sqlalchemy import func, select

from controller.engine import queue
from controller.engine.runtime import Engine
from controller.model.statuses import FINAL, ordered
from controller.reconcile.reconciler import Reconciler
from controller.source import GitSource
from controller.store import open_store
from controller.store.tables import execution_steps, executions, workflows

WORKFLOW = """apiVersion: workflows/v1
kind: Workflow
metadata: {name: three}
spec:
  trigger: {type: webhook}
  actions:
    - {id: first, type: set, vars: {n: "{{ trigger.body.n }}"}}
    - id: decide
      type: if
      condition: "{{ vars.n > 1 }}"
      then:
        - {id: big, type: set, vars: {size: big}}
      else:
        - {id: small, type: set, vars: {size: small}}
"""


def setup(tmp: Path, url: str | None, rollups: bool = True) -> tuple[Engine, int, str]:
    repo = make_repo(tmp / "repo")
    commit_files(repo, {"workflows.d/acme/three.yaml": WORKFLOW}, "add")
    store = open_store(url or f"sqlite:///{tmp / 'bench.db'}")
    with GitSource(str(tmp / "repo"), data_dir=tmp / "data") as source:
        Reconciler(source, store).sync()
    engine = Engine(store, data_dir=tmp / "data")
    if not rollups:
        engine.lifecycle.hooks.remove(engine.rollup)
    with store.read() as conn:
        workflow_id = conn.execute(select(workflows.c.id).where(workflows.c.key == "acme/three")).scalar_one()
    return engine, workflow_id, "acme/three"


def rows(workflow_id: int, n: int, start: int = 0) -> list[dict]:
    return [{"workflow_id": workflow_id, "workflow_key": "acme/three", "trigger": {"type": "webhook", "body": {"n": i % 3}}}
            for i in range(start, start + n)]


def work(engine: Engine, workers: int, done: threading.Event) -> list[threading.Thread]:
    def loop() -> None:
        while not done.is_set():
            if not engine.run_pending(limit=20):
                time.sleep(0.002)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    return threads


def finished(engine: Engine) -> int:
    with engine.store.read() as conn:
        return conn.execute(select(func.count()).where(executions.c.status.in_(ordered(FINAL)))).scalar_one()


def latencies(engine: Engine) -> list[float]:
    with engine.store.read() as conn:
        pairs = conn.execute(select(executions.c.created_at, executions.c.finished_at)
                             .where(executions.c.status == "succeeded")).all()
    return sorted((f - c).total_seconds() * 1000 for c, f in pairs)


def drain(engine: Engine, workflow_id: int, n: int, workers: int) -> tuple[float, int]:
    with engine.store.tx() as conn:
        queue.enqueue(conn, rows(workflow_id, n), engine.clock.now())
    done = threading.Event()
    start = time.perf_counter()
    threads = work(engine, workers, done)
    while finished(engine) < n:
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    done.set()
    for t in threads:
        t.join()
    with engine.store.read() as conn:
        steps = conn.execute(select(func.count()).select_from(execution_steps)).scalar_one()
    return elapsed, steps


def steady(engine: Engine, workflow_id: int, n: int, workers: int, rate: float) -> tuple[float, list[float]]:
    done = threading.Event()
    threads = work(engine, workers, done)
    start = time.perf_counter()
    batch = max(1, int(rate / 50))
    sent = 0
    while sent < n:
        with engine.store.tx() as conn:
            queue.enqueue(conn, rows(workflow_id, batch, sent), engine.clock.now())
        sent += batch
        target = start + sent / rate
        time.sleep(max(0.0, target - time.perf_counter()))
    while finished(engine) < n:
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    done.set()
    for t in threads:
        t.join()
    return elapsed, latencies(engine)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--db", default=None)
    parser.add_argument("--no-rollup", action="store_true", help="without the metrics rollup hook")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine, workflow_id, _ = setup(Path(tmp) / "drain", args.db, rollups=not args.no_rollup)
        elapsed, steps = drain(engine, workflow_id, args.executions, args.workers)
        drain_lat = latencies(engine)
        engine.store.close()
        engine2, workflow_id2, _ = setup(Path(tmp) / "steady", args.db, rollups=not args.no_rollup)
        steady_elapsed, lat = steady(engine2, workflow_id2, args.executions // 2, args.workers, args.rate)
        engine2.store.close()
    print(f"{'measure':<44} {'value':>12}")
    print(f"{'executions (drain)':<44} {args.executions:>12}")
    print(f"{'step rows persisted':<44} {steps:>12}")
    print(f"{'drain: executions/s':<44} {args.executions / elapsed:>12.0f}")
    print(f"{'drain: p50 trigger->finish ms':<44} {statistics.median(drain_lat):>12.0f}")
    print(f"{'steady ' + str(int(args.rate)) + '/s: executions':<44} {len(lat):>12}")
    print(f"{'steady: achieved executions/s':<44} {len(lat) / steady_elapsed:>12.0f}")
    print(f"{'steady: p50 trigger->finish ms':<44} {statistics.median(lat):>12.1f}")
    print(f"{'steady: p99 trigger->finish ms':<44} {lat[int(len(lat) * 0.99) - 1]:>12.1f}")


if __name__ == "__main__":
    main()
