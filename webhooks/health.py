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
        return _not_ready(f"the store is not reachable: {e}",
                          {"store": "unreachable", "reconcile": "unknown", "loops": "unknown"}, [], [])
    stalled_loops = [loop for loop in reported if loop["status"] == "stalled"]
    stalled = next((c for c in source.conditions if c["type"] == "Stalled" and c["status"] == "True"), None)
    checks = {"store": "ok", "reconcile": "stalled" if stalled else "ok", "loops": "stalled" if stalled_loops else "ok"}
    if stalled_loops:
        first = stalled_loops[0]
        return _not_ready(f"the {first['name']} loop has been failing since {first['failing_since']} "
                          f"({first['failures']} passes): {first['error']}", checks, reported, replicas)
    if stalled is not None:
        return _not_ready(f"the last reconcile is stalled ({stalled['reason']}): {stalled['message']}", checks,
                          reported, replicas)
    return {"status": "ready", "checks": checks, "loops": reported, "replicas": replicas}


def _not_ready(message: str, checks: dict[str, str], loops: list[dict[str, Any]],
               replicas: list[dict[str, Any]]) -> Any:
    return {"status": "not_ready", "checks": checks, "loops": loops, "replicas": replicas,
            "error": {"code": "not_ready", "message": message}}, 503
