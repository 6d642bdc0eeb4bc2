"""Probes: ``/healthz`` (the process answers) and ``/readyz`` (the store answers, reconcile not stalled).

``/readyz`` also lists the replicas serving the store seen recently, leader first (information: a
replica is ready whatever the others do).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from controller.errors import StoreError
from controller.reconcile.state import read_source
from controller.store import leadership, loops
from webhooks.context import services

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Any:
    """The process is up."""
    return {"status": "ok"}


@blueprint.get("/readyz")
def readyz() -> Any:
    """Ready: the store answers and the source's last reconcile is not Stalled."""
    found = services()
    try:
        with found.store.read() as conn:
            source = read_source(conn, "default")  # a query: the store answers
            reported = loops.recent(conn, found.now())
            replicas = leadership.recent(conn)
    except StoreError as e:
        return _not_ready(f"the store is not reachable: {e}", store=False, loops=[], replicas=[])
    stalled_loops = [loop for loop in reported if loop["status"] == "stalled"]
    if stalled_loops:
        first = stalled_loops[0]
        return _not_ready(f"the {first['name']} loop has been failing since {first['failing_since']} "
                          f"({first['failures']} passes): {first['error']}", store=True, loops=reported,
                          replicas=replicas)
    stalled = next((c for c in source.conditions if c["type"] == "Stalled" and c["status"] == "True"), None)
    if stalled is not None:
        return _not_ready(f"the last reconcile is stalled ({stalled['reason']}): {stalled['message']}", store=True,
                          loops=reported, replicas=replicas)
    return {"status": "ready", "checks": {"store": "ok", "reconcile": "ok", "loops": "ok"}, "loops": reported,
            "replicas": replicas}


def _not_ready(message: str, *, store: bool, loops: list[dict[str, Any]], replicas: list[dict[str, Any]]) -> Any:
    stalled = any(loop["status"] == "stalled" for loop in loops)
    checks = {"store": "ok" if store else "unreachable", "reconcile": "stalled" if store else "unknown",
              "loops": "stalled" if stalled else "ok" if store else "unknown"}
    return {"status": "not_ready", "checks": checks, "loops": loops, "replicas": replicas,
            "error": {"code": "not_ready", "message": message}}, 503
