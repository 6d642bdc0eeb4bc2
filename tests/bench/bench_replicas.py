"""Scale-out on PostgreSQL: executions per second with 1, 2 and 3 `wfctl serve` replicas on one database.

    python tests/bench/bench_replicas.py [--executions 3000] [--replicas 1,2,3] [--db URL] [--serve-args "..."]

For each replica count: a fresh PostgreSQL schema, the set/if/set workflow of bench_engine reconciled
into it, N real `wfctl serve` processes started on it (each with its own port and data directory,
default options: worker threads and worker processes as serve chooses them), then the executions
enqueued straight into the store at once (no HTTP: this measures the shared queue, not intake) and
the time until every one is final. It checks that each succeeded exactly once with its 3 step rows,
each attempted once. The figure includes the claim (FOR UPDATE SKIP LOCKED), the steps, the saves and
the rollups in the replicas; the replicas, PostgreSQL and this script share the machine's cores.
Not part of the default test run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import WORKFLOW, rows
from gitutil import commit_files, make_repo
from servers import free_port, ready, stop
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from controller.engine import queue
from controller.model.statuses import FINAL, ordered
from controller.reconcile.reconciler import Reconciler
from controller.source import GitSource
from controller.store import open_store
from controller.store.tables import execution_steps, executions, workflows

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _schema(base: str) -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return schema, url.render_as_string(hide_password=False)


def _drop(base: str, schema: str) -> None:
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def run(base_db: str, replicas: int, n: int, serve_args: list[str], tmp: Path) -> dict[str, float]:
    """Drain ``n`` executions with ``replicas`` serve processes on a fresh schema; the figures."""
    schema, url = _schema(base_db)
    servers: list[subprocess.Popen[bytes]] = []
    store = open_store(url)
    try:
        repo = tmp / f"repo{replicas}"
        commit_files(make_repo(repo), {"workflows.d/acme/three.yaml": WORKFLOW}, "add")
        with GitSource(str(repo), data_dir=tmp / f"sync{replicas}") as source:
            Reconciler(source, store).sync()
        with store.read() as conn:
            workflow_id = conn.execute(select(workflows.c.id).where(workflows.c.key == "acme/three")).scalar_one()
        ports = [free_port() for _ in range(replicas)]
        for i, port in enumerate(ports):
            command = [sys.executable, "-m", "controller", "--repo", str(repo), "--db", url,
                       "--data-dir", str(tmp / f"data{replicas}-{i}"), "serve", "--port", str(port), *serve_args]
            servers.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while not all(ready(f"http://127.0.0.1:{p}") for p in ports):
            if time.monotonic() > deadline:
                raise SystemExit(f"{replicas} replica(s) not ready after 60 s")
            time.sleep(0.2)
        with store.tx() as conn:
            queue.enqueue(conn, rows(workflow_id, n), datetime.now(UTC))
        start = time.perf_counter()
        while _final(store) < n:
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        _check(store, n)
        return {"replicas": replicas, "executions": n, "seconds": elapsed, "rate": n / elapsed}
    finally:
        stop(servers)
        store.close()
        _drop(base_db, schema)


def _final(store: Any) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).where(executions.c.status.in_(ordered(FINAL)))).scalar_one())


def _check(store: Any, n: int) -> None:
    """Every execution succeeded once, with its three step rows, each attempted once."""
    with store.read() as conn:
        succeeded = conn.execute(select(func.count()).where(executions.c.status == "succeeded")).scalar_one()
        steps = conn.execute(select(func.count()).select_from(execution_steps)).scalar_one()
        repeated = conn.execute(select(func.count()).select_from(execution_steps)
                                .where(execution_steps.c.attempts != 1)).scalar_one()
    if succeeded != n or steps != 3 * n or repeated:
        raise SystemExit(f"wrong: {succeeded} succeeded of {n}, {steps} step rows (want {3 * n}), "
                         f"{repeated} steps attempted more than once")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=3000)
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--db", default=os.environ.get("WFC_TEST_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--serve-args", default="", help="extra `wfctl serve` options, e.g. '--worker-processes 0'")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in (int(c) for c in args.replicas.split(",")):
            results.append(run(args.db, count, args.executions, shlex.split(args.serve_args), Path(tmp)))
    base = results[0]["rate"]
    print(f"{'replicas':>8} {'executions':>11} {'seconds':>9} {'executions/s':>13} {'vs first':>9}")
    for r in results:
        print(f"{r['replicas']:>8} {r['executions']:>11} {r['seconds']:>9.1f} {r['rate']:>13.0f} "
              f"{r['rate'] / base:>8.2f}x")


if __name__ == "__main__":
    main()
