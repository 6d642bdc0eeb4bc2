"""Webhook intake: signed POST -> execution recorded, through the real server on 127.0.0.1.

    python tests/bench/bench_webhooks.py [--connections 16] [--seconds 20] [--threads 4] [--db URL]
                                         [--client wrk|python] [--profile FILE]

The server (waitress via ``webhooks.start_server``, no workers: this measures intake) runs in a
child process. The load generator is another process, the one bench_e2e uses: ``wrk`` with a Lua
script when it is installed, else a pool of Python client processes; either way every request is a
distinct delivery signed beforehand, so the figure is the server's and not the clients' (16 Python
threads signing in one process on these 2 cores measured the client as much as the server). Each
connection is kept alive and sends back to back; a request counts when it answered 202, i.e. its
execution row is committed. Prints requests/s and p50/p90/p99/max latency, and checks that the
store holds exactly one queued execution per 202. ``--profile`` records the server with py-spy
while the load runs. Not part of the default test run.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import shutil
import sys
import tempfile
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
    parser.add_argument("--connections", "--clients", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=4, help="waitress worker threads")
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: SQLite in a temporary folder)")
    parser.add_argument("--client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--rate", type=int, default=4000, help="deliveries signed per second of load (upper bound)")
    parser.add_argument("--profile", default=None, help="py-spy record the server process into this file")
    args = parser.parse_args()

    from bench_e2e import deliveries, record_profile, run_python, run_wrk

    with tempfile.TemporaryDirectory() as tmp, own_schema(args.db) as url:
        context = multiprocessing.get_context("spawn")
        ready, stop = context.Queue(), context.Event()
        server = context.Process(target=serve, args=(tmp, url, args.threads, ready, stop))
        server.start()
        port, secret, db_url = ready.get(timeout=120)
        signed = deliveries(secret, int(args.rate * args.seconds) + 200)
        # Warm-up (not counted in the figures, counted in the check): connections, caches, first compiles.
        warm = run_python(port, signed[-200:], 4, 1.0)
        signed = signed[:-200]
        spy = record_profile(server.pid or 0, args.profile, args.seconds) if args.profile else None
        result = (run_wrk(port, signed, args.connections, args.seconds, Path(tmp)) if args.client == "wrk"
                  else run_python(port, signed, args.connections, args.seconds))
        if spy is not None:
            spy.wait(60)
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
        accepted = result["accepted"] + warm["accepted"]
        print(f"webhook intake: {args.connections} connections, {args.seconds:g}s, {args.threads} server threads, "
              f"{'PostgreSQL' if db_url.startswith('postgresql') else 'SQLite'}, client {args.client}")
        print(f"  requests      {result['requests']} ({result['accepted']} answered 202, {result['other']} other, "
              f"{result['errors']} socket errors)")
        print(f"  throughput    {result['requests'] / result['seconds']:.0f} requests/s")
        print(f"  latency       p50 {result['p50']:.1f} ms  p90 {result['p90']:.1f} ms  p99 {result['p99']:.1f} ms  "
              f"max {result['max']:.1f} ms")
        print(f"  recorded      {recorded} executions for {accepted} accepted requests "
              f"(incl. {warm['accepted']} warm-up)")
        # Requests in flight when the load stopped may have been accepted without the client counting the 202.
        if not accepted <= recorded <= accepted + args.connections + 4:
            sys.exit("mismatch: an accepted request has no execution, or an execution no request")


if __name__ == "__main__":
    main()
