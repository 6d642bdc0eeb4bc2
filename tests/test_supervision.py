"""Supervised loops: a pass that raises is reported and retried; the loop, and the other loops, go on.

The controller runs its real loops in threads with short intervals; faults are injected at our own seams
(a Reconciler and an Engine whose pass raises while told to).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from enginekit import Kit, kit
from servers import until

from controller.engine.runtime import Engine
from controller.engine.starting import start_now
from controller.reconcile.reconciler import Reconciler
from controller.security import secrets
from controller.service import Controller, ServeOptions
from controller.settings import Settings
from controller.source import GitSource
from controller.store import views
from webhooks import create_app

WF = "workflows.d/acme/{}.yaml"


def wf(name: str) -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n"
            f"  trigger: {{type: manual, entities: [ticket]}}\n  actions:\n    - {{id: a, type: set, vars: {{x: 1}}}}\n")


class FlakyReconciler(Reconciler):
    """Raises from every pass while ``broken`` is set, like a bug the next commit does not trigger."""

    broken = threading.Event()

    def sync(self) -> Any:
        if self.broken.is_set():
            raise RuntimeError("injected: the pass fell over")
        return super().sync()


class FlakyEngine(Engine):
    broken = threading.Event()

    def run_pending(self, limit: int = 10, stop: Callable[[], bool] = lambda: False,
                    budget: float | None = None) -> int:
        if self.broken.is_set():
            raise KeyError("injected: a worker pass fell over")
        return super().run_pending(limit, stop, budget)


@pytest.fixture
def running(tmp_path: Path, store_url: str) -> Iterator[tuple[Kit, Controller, Any]]:
    FlakyReconciler.broken.clear()
    FlakyEngine.broken.clear()
    with kit(tmp_path, store_url) as k:
        k.commit({WF.format("one"): wf("one")})
        engine = FlakyEngine(k.store, data_dir=k.data_dir)
        with GitSource(str(k.path), data_dir=k.data_dir) as source:
            controller = Controller(FlakyReconciler(source, k.store), engine,
                                    ServeOptions(interval=0.2, workers=1, idle_poll=0.05))
            app = create_app(Settings(repo=str(k.path), data_dir=k.data_dir), k.store, engine, controller=controller,
                             environ={secrets.KEY_ENV: Fernet.generate_key().decode()})
            controller.start()
            try:
                yield k, controller, app.test_client()
            finally:
                controller.stop()


def applied(k: Kit, key: str) -> bool:
    with k.store.read() as conn:
        return any(w["id"] == key and w["version"] for w in views.status(conn)["workflows"])


def source_condition(k: Kit, kind: str) -> dict[str, Any]:
    with k.store.read() as conn:
        return next(c for c in views.status(conn)["source"]["conditions"] if c["type"] == kind)


def test_a_failing_reconcile_pass_is_stalled_and_the_next_good_pass_applies(running: Any) -> None:
    """Raising passes mark the source Stalled and /readyz 503 with the error; then the next commit applies."""
    k, controller, client = running
    until(lambda: applied(k, "acme/one"))
    assert client.get("/readyz").status_code == 200
    FlakyReconciler.broken.set()
    k.commit({WF.format("two"): wf("two")})
    controller.sync_now()
    assert until(lambda: client.get("/readyz").status_code == 503)  # the source is Stalled at once
    answer = until(lambda: (r := client.get("/readyz")).json["checks"]["loops"] == "stalled" and r)
    assert "the reconcile loop has been failing" in answer.json["error"]["message"]
    assert "RuntimeError: injected: the pass fell over" in answer.json["error"]["message"]
    assert answer.status_code == 503
    stalled = source_condition(k, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "ReconcileError"
    assert not applied(k, "acme/two")
    assert controller._threads[0].is_alive()  # the loop is still running
    scheduled = controller.supervisor.health["scheduler"].last_ok_at
    until(lambda: controller.supervisor.health["scheduler"].last_ok_at != scheduled)  # the other loops go on
    FlakyReconciler.broken.clear()
    controller.sync_now()
    until(lambda: applied(k, "acme/two"))
    until(lambda: client.get("/readyz").status_code == 200)
    assert source_condition(k, "Stalled")["status"] == "False"


def test_a_failing_worker_pass_goes_on_and_runs_the_queue_afterwards(running: Any) -> None:
    """A worker whose pass raises is reported, backs off, and runs what is queued once it can."""
    k, controller, client = running
    until(lambda: applied(k, "acme/one"))
    FlakyEngine.broken.set()
    execution = start_now(controller.engine, "acme/one")
    until(lambda: client.get("/readyz").status_code == 503)
    with k.store.read() as conn:
        loops = {loop["name"]: loop for loop in views.status(conn)["loops"]}
    assert loops["worker-0"]["status"] == "stalled" and "KeyError" in loops["worker-0"]["error"]
    assert loops["reconcile"]["status"] == "ok"
    FlakyEngine.broken.clear()
    until(lambda: k.show(execution)["status"] == "succeeded")
    until(lambda: client.get("/readyz").status_code == 200)


def test_a_file_that_breaks_the_parser_fails_only_itself_under_serve(running: Any) -> None:
    """`{a: ` nested 20,000 deep (and a 50,000-deep list) are Invalid with a message; the rest applies."""
    k, controller, client = running
    until(lambda: applied(k, "acme/one"))
    k.commit({WF.format("deep"): "{a: " * 20_000 + "1" + "}" * 20_000, WF.format("list"): "[" * 50_000 + "]" * 50_000,
              WF.format("two"): wf("two")})
    controller.sync_now()
    until(lambda: applied(k, "acme/two"))
    with k.store.read() as conn:
        rows = {w["id"]: w for w in views.status(conn)["workflows"]}
    for key in ("acme/deep", "acme/list"):
        assert rows[key]["sync"] == "Invalid" and "nests deeper than 100 levels" in rows[key]["message"]
    k.commit({WF.format("deep"): None, WF.format("list"): None, WF.format("three"): wf("three")})
    controller.sync_now()
    until(lambda: applied(k, "acme/three"))
    assert client.get("/readyz").status_code == 200
