"""``GET /metrics``: the Prometheus text exposition (see :mod:`controller.metrics.prom`).

No token is needed unless ``WFC_METRICS_TOKEN`` is set; then the scraper sends it as a bearer token.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from controller.metrics import prom
from webhooks.context import services

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
def metrics() -> Any:
    found = services()
    prom.check_token(request.headers.get("Authorization"), found.environ)
    body = prom.exposition(found.store, found.now(), found.environ)
    return Response(body, content_type=prom.CONTENT_TYPE, headers={"Cache-Control": "no-store"})
