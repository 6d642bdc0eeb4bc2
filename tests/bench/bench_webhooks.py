"""Webhook intake: signed POST -> execution recorded, through the real server on 127.0.0.1.

    python tests/bench/bench_webhooks.py [--clients 16] [--seconds 20] [--threads 8] [--db URL]

The server (waitress via ``webhooks.start_server``, no workers: this measures intake) runs in a
child process so that the clients' Python does not share its GIL. Each client keeps one HTTP/1.1
connection and sends signed JSON bodies back to back; a request counts when it answered 202, i.e.
its execution row is committed. Prints requests/s and p50/p90/p99/max latency, and checks that the
store holds exactly one queued execution per 202. Not part of the default test run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORKFLOW = """apiVersion: workflows/v1
kind: Workflow
metadata: {name: contact-form}
spec:
  trigger: {type: webhook}
  actions:
    - {id: note, type: set, vars: {email: "{{ trigger.body.email }}"}}
"""
KEY = "acme/contact-form"


def serve(tmp: str, url: str | None, threads: int, ready: Any, stop: Any) -> None:
    """The server process: a synced store, a rotated secret, the app on a free port until ``stop``."""
    from cryptography.fernet import Fernet
    from gitutil import commit_files, make_repo

    from controller.reconcile.reconciler import Reconciler
    from controller.security import secrets
    from controller.settings import Settings
    from controller.source import GitSource
    from webhooks import create_app, start_server

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth is N" at every burst
    root = Path(tmp)
    commit_files(make_repo(root / "repo"), {"workflows.d/acme/contact-form.yaml": WORKFLOW}, "add")
    settings = Settings(repo=str(root / "repo"), data_dir=root / "data", database_url=url or f"sqlite:///{root}/b.db")
    store = settings.open_store()
    with GitSource(settings.repo, data_dir=settings.data_dir) as source:
        Reconciler(source, store).sync()
    key = Fernet.generate_key().decode()
    box = secrets.SecretBox(key)
    with store.tx() as conn:
        secret = secrets.rotate(conn, box, KEY, actor="bench", now=__import__("datetime").datetime.now(
            __import__("datetime").UTC)).secret
    app = create_app(settings, store, settings.engine(store), environ={secrets.KEY_ENV: key})
    handle = start_server(app, "127.0.0.1", 0, threads=threads)
    ready.put((handle.port, secret, settings.db_url))
    stop.wait()
    handle.stop()
    store.close()


def client(port: int, secret: str, until: float, latencies: list[float], statuses: dict[int, int], n: int) -> None:
    from controller.security.signing import sign

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = 0
    while time.perf_counter() < until:
        body = json.dumps({"email": f"c{n}-{i}@example.com", "name": "Bench", "message": "hello " * 10}).encode()
        now = int(time.time())
        headers = {"Content-Type": "application/json", "X-Wfc-Timestamp": str(now),
                   "X-Wfc-Signature": sign(secret, now, body)}
        started = time.perf_counter()
        conn.request("POST", f"/hooks/{KEY}", body=body, headers=headers)
        answer = conn.getresponse()
        answer.read()
        latencies.append(time.perf_counter() - started)
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        i += 1
    conn.close()


@contextmanager
def own_schema(url: str | None) -> Iterator[str | None]:
    """A PostgreSQL URL gets a fresh schema, dropped afterwards (as the tests do); SQLite a temporary file."""
    if not url or not url.startswith("postgresql"):
        yield url
        return
    from conftest import _pg_schema_url

    yield from _pg_schema_url(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=4, help="waitress worker threads")
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: SQLite in a temporary folder)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, own_schema(args.db) as url:
        context = multiprocessing.get_context("spawn")
        ready, stop = context.Queue(), context.Event()
        server = context.Process(target=serve, args=(tmp, url, args.threads, ready, stop))
        server.start()
        port, secret, db_url = ready.get(timeout=120)
        warm: list[float] = []
        client(port, secret, time.perf_counter() + 1.0, warm, {}, -1)  # connections, caches, JIT-free warm-up

        latencies: list[float] = []
        statuses: dict[int, int] = {}
        until = time.perf_counter() + args.seconds
        threads = [threading.Thread(target=client, args=(port, secret, until, latencies, statuses, n))
                   for n in range(args.clients)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        stop.set()
        server.join(30)

        from sqlalchemy import func, select

        from controller.store import open_store
        from controller.store.tables import executions

        store = open_store(db_url)
        with store.read() as conn:
            recorded = conn.execute(select(func.count()).select_from(executions)
                                    .where(executions.c.status == "queued")).scalar_one()
        store.close()
        accepted = statuses.get(202, 0)
        ordered = sorted(latencies)

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

        print(f"webhook intake: {args.clients} clients, {args.seconds:g}s, {args.threads} server threads, "
              f"{'PostgreSQL' if db_url.startswith('postgresql') else 'SQLite'}")
        print(f"  requests      {len(latencies)} ({statuses})")
        print(f"  throughput    {len(latencies) / elapsed:.0f} requests/s")
        print(f"  latency       p50 {pct(0.50):.1f} ms  p90 {pct(0.90):.1f} ms  p99 {pct(0.99):.1f} ms  "
              f"max {ordered[-1] * 1000:.1f} ms  mean {statistics.fmean(ordered) * 1000:.1f} ms")
        print(f"  recorded      {recorded} executions for {accepted + len(warm)} accepted requests "
              f"(incl. {len(warm)} warm-up)")
        if recorded != accepted + len(warm):
            sys.exit("mismatch: an accepted request has no execution")


if __name__ == "__main__":
    main()
