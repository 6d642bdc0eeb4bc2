"""The JSON API under ``/api/v1``: workflows, executions, and what a host application pushes.

Every route but the OpenAPI document needs a bearer token (:mod:`webhooks.auth`); a token sees
its own account only.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from webhooks.api import accounts, executions, workflows
from webhooks.openapi import document

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")
blueprint.register_blueprint(workflows.blueprint)
blueprint.register_blueprint(executions.blueprint)
blueprint.register_blueprint(accounts.blueprint)


@blueprint.get("/openapi.json")
def openapi() -> Any:
    """The OpenAPI 3.1 document of this service."""
    return document()
