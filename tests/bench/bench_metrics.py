"""Metrics queries over a month of history: 1,000,000 executions of 1,000 workflows, two versions each.

    python tests/bench/bench_metrics.py [--executions 1000000] [--workflows 1000] [--db URL]

The history is loaded through the rollup path (``rollup.fold``, the function the lifecycle hook
calls, here with batches of outcomes), spread over the 30d window (today and the 29 days before); each execution has three
steps, 4% fail with a failure class. Then each query runs 30 times and the table shows the median
and the slowest: one workflow's 30d figures, its by-version split, and the account-wide worst
performers over 7d and 30d. Aims: 10 ms, 20 ms and 100 ms. With WFC_TEST_DATABASE_URL set it also
runs on PostgreSQL (in a schema of its own). Not part of the default test run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import _pg_schema_url
from gitutil import commit_files, make_repo
from sqlalchemy import func, select

from controller.metrics import rollup, windows
from controller.metrics.rollup import Outcome, StepOutcome
from controller.reconcile.reconciler import Reconciler
from controller.source import GitSource
from controller.store import Store, open_store
from controller.store.tables import metric_actions, metric_buckets, workflows

WORKFLOW = """apiVersion: workflows/v1
kind: Workflow
metadata: {{name: w{i}}}
spec:
  trigger: {{type: webhook}}
  actions:
    - {{id: first, type: set, vars: {{n: {v}}}}}
    - {{id: call, type: http.request, method: POST, url: "https://crm.example.test/{i}"}}
    - {{id: last, type: set, vars: {{done: true}}}}
"""
FAILURES = ("http_5xx", "http_4xx", "timeout", "template")


def load(tmp: Path, url: str, n_workflows: int, n_executions: int, seed: int) -> tuple[Store, float, int]:
    repo = make_repo(tmp / "repo")
    store = open_store(url)
    for v in (1, 2):  # two versions of every workflow, for the by-version split
        commit_files(repo, {f"workflows.d/acme/w{i}.yaml": WORKFLOW.format(i=i, v=v) for i in range(n_workflows)},
                     f"v{v}")
        with GitSource(str(tmp / "repo"), data_dir=tmp / "data") as source:
            Reconciler(source, store).sync()
    with store.read() as conn:
        ids = [row.id for row in conn.execute(select(workflows.c.id).order_by(workflows.c.id))]
    rnd = random.Random(seed)
    end = datetime.now(UTC)
    start = end.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=29)  # the 30d window
    span = (end - start).total_seconds()
    batch = 50_000
    loaded = 0
    began = time.perf_counter()
    # In time order, as the hook would see them: each batch covers a slice of the month.
    for first in range(0, n_executions, batch):
        outcomes = []
        for j in range(first, min(first + batch, n_executions)):
            at = start + timedelta(seconds=span * j / n_executions)
            failed = rnd.random() < 0.04
            active = rnd.expovariate(1 / 0.2)
            waited = rnd.choice((0.0, 0.0, 0.0, 60.0))
            outcomes.append(Outcome(
                workflow_id=rnd.choice(ids), account="acme", version=1 if j < n_executions * 2 // 3 else 2,
                status="failed" if failed else "succeeded", finished_at=at, duration=active + waited, waited=waited,
                failure=rnd.choice(FAILURES) if failed else None,
                steps=(StepOutcome("first", "set", False, 0.0), StepOutcome("call", "http.request", failed, active),
                       *(() if failed else (StepOutcome("last", "set", False, 0.0),)))))
        with store.tx() as conn:
            rollup.fold(conn, outcomes)
        loaded += len(outcomes)
    return store, time.perf_counter() - began, loaded


def timed(fn: object, runs: int = 30) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples), max(samples)


def bench(url: str, tmp: Path, args: argparse.Namespace) -> list[tuple[str, str, float, float]]:
    store, seconds, loaded = load(tmp, url, args.workflows, args.executions, args.seed)
    now = datetime.now(UTC)
    with store.read() as conn:
        buckets = conn.execute(select(func.count()).select_from(metric_buckets)).scalar_one()
        actions = conn.execute(select(func.count()).select_from(metric_actions)).scalar_one()
        total = windows.workflow_metrics(conn, "acme/w7", "30d", now)["current"]["executions"]
        overall = windows.account_metrics(conn, "acme", "30d", now)["totals"]["executions"]
    backend = "sqlite" if url.startswith("sqlite") else "postgresql"
    rows = [(backend, f"load {loaded:,} executions through rollup.fold", seconds * 1000, loaded / seconds),
            (backend, f"rows: {buckets:,} buckets, {actions:,} action buckets", 0.0, 0.0)]
    assert overall == loaded, (overall, loaded)

    def q(fn: object) -> tuple[float, float]:
        def run() -> None:
            with store.read() as conn:
                fn(conn)  # type: ignore[operator]
        return timed(run)

    for name, fn in (
        (f"workflow 30d ({total:,} executions)", lambda c: windows.workflow_metrics(c, "acme/w7", "30d", now)),
        ("workflow 24h", lambda c: windows.workflow_metrics(c, "acme/w7", "24h", now)),
        ("workflow 30d by version", lambda c: windows.workflow_metrics(c, "acme/w7", "30d", now, by_version=True)),
        ("account worst performers 7d", lambda c: windows.account_metrics(c, "acme", "7d", now)),
        ("account worst performers 30d", lambda c: windows.account_metrics(c, "acme", "30d", now)),
        ("account worst performers 24h", lambda c: windows.account_metrics(c, "acme", "24h", now)),
    ):
        median, worst = q(fn)
        rows.append((backend, name, median, worst))
    store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--workflows", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--db", default=None, help="only this store")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.db:
            results += bench(args.db, Path(tmp), args)
        else:
            results += bench(f"sqlite:///{Path(tmp) / 'bench.db'}", Path(tmp) / "sqlite", args)
            pg = os.environ.get("WFC_TEST_DATABASE_URL")
            if pg:
                for url in _pg_schema_url(pg):
                    results += bench(url, Path(tmp) / "pg", args)
    print(f"{'store':<11} {'what':<52} {'median ms':>10} {'max ms':>10}")
    for backend, name, median, worst in results:
        if name.startswith("load"):
            print(f"{backend:<11} {name:<52} {median:>10.0f} {'':>10}  ({worst:,.0f} executions/s)")
        elif name.startswith("rows"):
            print(f"{backend:<11} {name:<52}")
        else:
            print(f"{backend:<11} {name:<52} {median:>10.2f} {worst:>10.2f}")


if __name__ == "__main__":
    main()
