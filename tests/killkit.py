"""`wfctl serve` killed with kill -9 at random moments under load, restarted, then every effect counted.

Used by the bounded test in tests/test_durability_kill.py and by tests/bench/bench_kill.py (20 cycles).
Each urgent ticket starts one execution of five effect steps: a task is created and the ticket updated
(internal: must exist exactly once), a mail goes to an outbox mailbox and a POST to a local HTTP server
(external: may repeat, but only as a logged second attempt with the same idempotency key).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitutil import commit_files, make_repo
from servers import ALLOW_LOOPBACK, free_port, http_server
from sqlalchemy import func, select

from controller.engine.records import RecordService
from controller.engine.runtime import Engine
from controller.store import open_store, views
from controller.store import records as record_store
from controller.store.tables import executions, metric_actions, metric_buckets

WORKFLOW = """apiVersion: workflows/v1
kind: Workflow
metadata: {{name: effects}}
spec:
  trigger: {{type: record, entity: ticket, events: [created]}}
  actions:
    - {{id: make, type: record.create, entity: task, set: {{ticket: "{{{{ record.id }}}}"}}}}
    - {{id: tell, type: email.send, mailbox: "mailbox:mb_out", to: a@customer.test, subject: "t {{{{ record.id }}}}", body: x}}
    - {{id: crm, type: http.request, method: POST, url: "{url}/crm", json: {{ticket: "{{{{ record.id }}}}"}}}}
    - {{id: flag, type: record.update, entity: ticket, record_id: "{{{{ record.id }}}}", set: {{done: true}}}}
    - {{id: note, type: set, vars: {{ok: true}}}}
"""
DIRECTORY = "mailboxes:\n  - {id: mb_out, name: Out, address: out@acme.test, kind: outbox}\n"
STEPS = ("make", "tell", "crm", "flag", "note")


@dataclass
class Report:
    tickets: int = 0
    kills: int = 0
    effects: int = 0  # effect steps that succeeded (4 per execution)
    lost: list[str] = field(default_factory=list)
    duplicated_internal: list[str] = field(default_factory=list)
    invisible_repeats: list[str] = field(default_factory=list)
    repeats: int = 0  # external calls made twice or more, each visible as a second attempt
    miscounted: list[str] = field(default_factory=list)  # metrics that do not match the executions

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated_internal or self.invisible_repeats or self.miscounted)


def run(tmp: Path, db: str, *, cycles: int, tickets_per_cycle: int, seed: int) -> Report:
    rng = random.Random(seed)
    report = Report()
    with http_server() as web:
        repo = tmp / "repo"
        commit_files(make_repo(repo), {"workflows.d/acme/effects.yaml": WORKFLOW.format(url=web.url)}, "add")
        (tmp / "acme.yaml").write_text(DIRECTORY)
        (tmp / "config.yaml").write_text(ALLOW_LOOPBACK)  # the crm server is on 127.0.0.1
        data = tmp / "data"
        base = [sys.executable, "-m", "controller", "--repo", str(repo), "--data-dir", str(data), "--db", db,
                "--config", str(tmp / "config.yaml")]
        subprocess.run([*base, "directory", "load", str(tmp / "acme.yaml"), "--account", "acme"], check=True,
                       capture_output=True, timeout=60)
        subprocess.run([*base, "sync"], check=True, capture_output=True, timeout=60)
        store = open_store(db)
        writer = RecordService(Engine(store, data_dir=data))
        port = free_port()
        serve = _serve(base, port)
        try:
            for _ in range(cycles):
                for _ in range(tickets_per_cycle):
                    writer.create("acme", "ticket", {"title": "t"})
                    report.tickets += 1
                time.sleep(rng.uniform(0.2, 1.2))
                serve.send_signal(signal.SIGKILL)
                serve.wait(10)
                report.kills += 1
                serve = _serve(base, port)
            _until_done(store, report.tickets)
        finally:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(15)
            except subprocess.TimeoutExpired:
                serve.kill()
        _count(report, store, data, web.requests)
        store.close()
    return report


def _serve(base: list[str], port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([*base, "serve", "--interval", "0.5", "--workers", "2", "--lease", "2",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def _until_done(store: Any, expected: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.read() as conn:
            done = conn.execute(select(func.count()).where(executions.c.status == "succeeded")).scalar_one()
        if done >= expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"only {done} of {expected} executions finished in {timeout:g}s")


def _count(report: Report, store: Any, data: Path, sent: list[Any]) -> None:
    with store.read() as conn:
        rows = views.executions_list(conn, workflow="acme/effects", limit=100_000)
        traces = [views.execution(conn, row["id"]) for row in rows]
        tasks = Counter(str(t["ticket"]) for t in record_store.list_records(conn, "acme", "task", limit=100_000))
        tickets = {t["id"]: t for t in record_store.list_records(conn, "acme", "ticket", limit=100_000)}
        # Metrics are folded in the transaction of the final move: one count per execution, kill or not.
        counted = conn.execute(select(func.sum(metric_buckets.c.executions)).where(metric_buckets.c.span == "d")
                               ).scalar() or 0
        steps_counted = conn.execute(select(func.sum(metric_actions.c.count)).where(metric_actions.c.span == "h")
                                     ).scalar() or 0
    if len(traces) != report.tickets:
        report.lost.append(f"{report.tickets} tickets but {len(traces)} executions")
    finished = sum(1 for t in traces if t["status"] in ("succeeded", "failed", "terminated"))
    if counted != finished or steps_counted != finished * len(STEPS):
        report.miscounted.append(f"{finished} finished executions, {counted} in the metrics; "
                                 f"{steps_counted} steps counted for {finished * len(STEPS)}")
    posts = Counter(str(r.headers.get("Idempotency-Key")) for r in sent if r.path == "/crm")
    mails = list((data / "outbox" / "acme" / "mb_out").glob("*.eml"))
    if len(mails) != report.tickets:
        report.lost.append(f"{len(mails)} outbox files for {report.tickets} executions")
    for trace in traces:
        steps = {s["action_id"]: s for s in trace["steps"]}
        ticket = str(trace["trigger"]["record"]["id"])
        if trace["status"] != "succeeded" or set(steps) != set(STEPS):
            report.lost.append(f"execution {trace['id']}: {trace['status']}, steps {sorted(steps)}")
            continue
        report.effects += 4
        if tasks[ticket] != 1:
            report.duplicated_internal.append(f"ticket {ticket}: {tasks[ticket]} tasks")
        if tickets[ticket].get("done") is not True:
            report.lost.append(f"ticket {ticket} was not flagged")
        for name in ("make", "flag"):
            if steps[name]["attempts"] != 1:
                report.duplicated_internal.append(f"execution {trace['id']} {name}: {steps[name]['attempts']} attempts")
        crm, tell = steps["crm"], steps["tell"]
        calls = posts[str(crm["idempotency_key"])]
        if calls == 0:
            report.lost.append(f"execution {trace['id']}: no POST with key {crm['idempotency_key']}")
        for step, made in ((crm, calls), (tell, None)):
            visible = len(step["attempt_log"]) == step["attempts"] - 1
            if not visible or (made is not None and made > step["attempts"]):
                report.invisible_repeats.append(f"execution {trace['id']} {step['action_id']}: {made} calls, "
                                                f"{step['attempts']} attempts, log {step['attempt_log']}")
            if step["attempts"] > 1:
                report.repeats += 1

