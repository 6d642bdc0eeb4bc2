"""`wfctl serve` as a real process: a kill -9 mid-execution loses nothing; SIGTERM exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from enginekit import read_store
from gitutil import commit_files, make_repo
from servers import children, free_port, until

from controller.store import open_store, views
from controller.store import records as record_store

WORKFLOW = """apiVersion: workflows/v1
kind: Workflow
metadata: {name: durable}
spec:
  trigger: {type: manual, entities: [ticket]}
  actions:
    - {id: before, type: record.create, entity: task, set: {title: before}}
    - {id: nap, type: wait, duration: 2s}
    - {id: after, type: record.create, entity: task, set: {title: after}}
"""


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[list[str], str]]:
    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {"workflows.d/acme/durable.yaml": WORKFLOW}, "add")
    db = f"sqlite:///{tmp_path / 'wfctl.db'}"
    base = [sys.executable, "-m", "controller", "--repo", str(repo), "--data-dir", str(tmp_path / "data"), "--db", db]
    yield base, db


def _serve(base: list[str], port: int = 0) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*base, "serve", "--interval", "0.5", "--workers", "1", "--lease", "2", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _execution(db: str, execution_id: int) -> dict[str, Any]:
    return read_store(db, lambda conn: views.execution(conn, execution_id))


def _healthy(port: int) -> Any:
    try:
        response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except requests.ConnectionError:
        return None
    return response.json() if response.status_code == 200 else None


def _synced(db: str) -> bool:
    store = open_store(db)
    try:
        with store.read() as conn:
            return any(w["id"] == "acme/durable" for w in views.status(conn)["workflows"])
    finally:
        store.close()


def test_kill_9_mid_execution_then_restart_resumes(setup: tuple[list[str], str]) -> None:
    """After kill -9 during a wait and a restart, the execution finishes and no completed step ran twice."""
    base, db = setup
    server = _serve(base)
    try:
        until(lambda: _synced(db))
        started = subprocess.run([*base, "run", "acme/durable"], capture_output=True, text=True, check=True)
        execution_id = int(started.stdout.strip())
        until(lambda: _execution(db, execution_id)["status"] == "waiting")
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    restarted = _serve(base)
    try:
        final = until(lambda: (e := _execution(db, execution_id))["status"] in ("succeeded", "failed") and e)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(15)
    assert final["status"] == "succeeded", final
    assert [(s["action_id"], s["attempts"]) for s in final["steps"]] == [("before", 1), ("nap", 1), ("after", 1)]
    store = open_store(db)
    with store.read() as conn:
        titles = sorted(r["title"] for r in record_store.list_records(conn, "acme", "task"))
    store.close()
    assert titles == ["after", "before"]


def test_sigterm_exits_zero_quickly(setup: tuple[list[str], str]) -> None:
    """The HTTP service answers next to the controller; SIGTERM stops both with exit 0 within 10 s."""
    base, db = setup
    port = free_port()
    server = _serve(base, port)
    until(lambda: _synced(db))
    assert until(lambda: _healthy(port)) == {"status": "ok"}
    if Path("/proc/self/task").is_dir():  # between reconcile passes no git process waits (Linux: read off /proc)
        try:
            assert until(lambda: not children(server.pid, b"cat-file"))
        except BaseException:
            server.kill()
            server.wait(10)
            raise
    began = time.monotonic()
    server.send_signal(signal.SIGTERM)
    assert server.wait(10) == 0
    assert time.monotonic() - began < 10
    assert os.path.exists(db.removeprefix("sqlite:///"))


def _worker_children(pid: int) -> list[int]:
    """The worker processes of serve (not its git processes)."""
    return children(pid, b"wfctl-worker")


def _succeeded_total(port: int) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "wfctl_executions_total" and sample.labels.get("status") == "succeeded")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc (Linux)")
def test_worker_processes_run_the_work_count_in_metrics_and_come_back_after_kill_9(
        setup: tuple[list[str], str]) -> None:
    """With --worker-processes 1 the executions run in the child (serve has no worker threads), their counters
    reach serve's /metrics, the child has not loaded the YAML loader, a child killed with -9 is started again,
    and SIGTERM leaves no process behind."""
    base, db = setup
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    server = subprocess.Popen([*base, "serve", "--interval", "0.5", "--workers", "1", "--worker-processes", "1",
                               "--lease", "2", "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=env)

    def run_to_the_end() -> None:
        started = subprocess.run([*base, "run", "acme/durable"], capture_output=True, text=True, check=True)
        execution_id = int(started.stdout.strip())
        until(lambda: _execution(db, execution_id)["status"] == "succeeded", timeout=60)

    try:
        until(lambda: _synced(db))
        until(lambda: _healthy(port))
        [child] = until(lambda: _worker_children(server.pid))
        run_to_the_end()
        assert until(lambda: _succeeded_total(port) == 1)
        assert b"_ruamel_yaml" not in Path(f"/proc/{child}/maps").read_bytes()  # a worker reads no YAML (3 MB)
        os.kill(child, signal.SIGKILL)
        [again] = until(lambda: [c for c in _worker_children(server.pid) if c != child], timeout=30)
        run_to_the_end()
        assert until(lambda: _succeeded_total(port) == 2)  # the killed child's count stays in its file
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
    assert not Path(f"/proc/{again}").exists() or b"zombie" in Path(f"/proc/{again}/status").read_bytes().lower()
