"""Probes: ``/healthz`` (the process answers) and ``/readyz`` (the store answers, reconcile not stalled)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from controller.errors import StoreError
from controller.reconcile.state import read_source
from webhooks.context import services

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Any:
    """The process is up."""
    return {"status": "ok"}


@blueprint.get("/readyz")
def readyz() -> Any:
    """Ready: the store answers and the source's last reconcile is not Stalled."""
    try:
        with services().store.read() as conn:
            source = read_source(conn, "default")  # a query: the store answers
    except StoreError as e:
        return _not_ready(f"the store is not reachable: {e}", store=False)
    stalled = next((c for c in source.conditions if c["type"] == "Stalled" and c["status"] == "True"), None)
    if stalled is not None:
        return _not_ready(f"the last reconcile is stalled ({stalled['reason']}): {stalled['message']}", store=True)
    return {"status": "ready", "checks": {"store": "ok", "reconcile": "ok"}}


def _not_ready(message: str, *, store: bool) -> Any:
    checks = {"store": "ok" if store else "unreachable", "reconcile": "stalled" if store else "unknown"}
    return {"status": "not_ready", "checks": checks, "error": {"code": "not_ready", "message": message}}, 503
