"""Take-over on PostgreSQL: from kill -9 of the leading `wfctl serve` to its schedules firing on another replica.

    python tests/bench/bench_takeover.py [--ttls 2,15] [--runs 3] [--replicas 2] [--db URL] [--serve-args "..."]

For each lease time: a fresh PostgreSQL schema with one schedule workflow (every 5 minutes), N real
`wfctl serve --lease-ttl T` processes on it (other options as serve chooses them, plus --serve-args),
and, per run, the leader killed with kill -9 at a random moment of its renewal cycle; right at the kill
its schedule job is made due (its row edited as a scheduler would leave it), so the figure is the
take-over plus the new leader's scheduler start, not the wait for the schedule's next instant. Two
times from the kill: the lease row taken by another replica (a new generation), and the first
execution the schedule created (under that generation). The killed replica is started again as a
follower before the next run. Expected: between about 2/3 and 4/3 of the ttl (the lease runs out a
ttl after the leader's last renewal, which was up to ttl/3 before the kill; a follower tries every ttl/3).
Not part of the default test run.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import leasekit
from bench_replicas import DEFAULT_DB, _drop, _schema
from gitutil import commit_files, make_repo
from leasekit import JOB, TICK
from servers import free_port, stop
from sqlalchemy import func, select

from controller.store import open_store
from controller.store.tables import executions, leader, schedule_fires


def _until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not seen after {timeout:g} s")
        time.sleep(0.1)


def run(base_db: str, ttl: float, runs: int, replicas: int, serve_args: list[str], tmp: Path) -> list[tuple[float, float]]:
    """``runs`` leader kills with ``replicas`` serve processes at ``--lease-ttl ttl``: (lease taken, first
    schedule execution) in seconds after each kill."""
    schema, url = _schema(base_db)
    repo = tmp / f"repo{ttl:g}"
    commit_files(make_repo(repo), {"workflows.d/acme/tick.yaml": TICK}, "add")
    base = [sys.executable, "-m", "controller", "--repo", str(repo), "--db", url]
    subprocess.run([*base, "--data-dir", str(tmp / f"sync{ttl:g}"), "sync"], check=True, capture_output=True, timeout=60)

    def serve(i: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*base, "--data-dir", str(tmp / f"data{ttl:g}-{i}"), "serve", "--lease-ttl", str(ttl),
                                 "--port", str(free_port()), *serve_args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    servers = [serve(i) for i in range(replicas)]
    store = open_store(url)
    figures = []
    try:
        for _ in range(runs):
            _until(lambda: len(leasekit.replicas(url)) == replicas and leasekit.leader_pid(url)
                   and leasekit.job(url, JOB), 120, f"{replicas} replicas, a leader and its schedule job")
            with store.read() as conn:
                generation = conn.execute(select(leader.c.generation)).scalar_one()
                started = conn.execute(select(func.count()).where(executions.c.workflow_key == "acme/tick")).scalar_one()
            time.sleep(random.uniform(0, ttl / 3))  # a random moment of the leader's renewal cycle
            victim = next(i for i, s in enumerate(servers) if s.pid == leasekit.leader_pid(url))
            servers[victim].send_signal(signal.SIGKILL)
            killed = time.perf_counter()
            servers[victim].wait()
            leasekit.job(url, JOB, due=datetime.now(UTC))  # due at the kill: the new leader fires it at its start
            taken = fired = None
            deadline = killed + 4 * ttl + 30
            while fired is None and time.perf_counter() < deadline:
                with store.read() as conn:
                    now_generation = conn.execute(select(leader.c.generation)).scalar_one()
                    count = conn.execute(select(func.count()).where(executions.c.workflow_key == "acme/tick")
                                         ).scalar_one()
                    by_new = conn.execute(select(func.count()).where(schedule_fires.c.generation > generation)
                                          ).scalar_one()
                now = time.perf_counter()
                if taken is None and now_generation > generation:
                    taken = now - killed
                if count > started and by_new:
                    fired = now - killed
                time.sleep(0.02)
            if taken is None or fired is None:
                raise SystemExit(f"ttl {ttl:g}: no take-over and fire within {4 * ttl + 30:g} s of the kill")
            figures.append((taken, fired))
            servers[victim] = serve(victim)
        return figures
    finally:
        stop(servers)
        store.close()
        _drop(base_db, schema)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ttls", default="2,15", help="lease times (--lease-ttl), seconds")
    parser.add_argument("--runs", type=int, default=3, help="leader kills per lease time")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--db", default=os.environ.get("WFC_TEST_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--serve-args", default="", help="extra `wfctl serve` options, e.g. '--worker-processes 0'")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for ttl in (float(t) for t in args.ttls.split(",")):
            results.append((ttl, run(args.db, ttl, args.runs, args.replicas, shlex.split(args.serve_args), Path(tmp))))
    print(f"leader kill -9 to schedule firing again, {args.replicas} replicas; the job is made due at the kill, so this "
          "is the take-over plus the new leader's scheduler start (seconds after the kill: median (min-max))")
    print(f"{'lease-ttl':>9} {'runs':>5} {'lease taken':>20} {'schedule fired':>20}")
    for ttl, figures in results:
        print(f"{ttl:>9g} {len(figures):>5} {_spread([f[0] for f in figures]):>20} {_spread([f[1] for f in figures]):>20}")


if __name__ == "__main__":
    main()
