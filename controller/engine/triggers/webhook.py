"""``webhook``: a signed POST to ``/hooks/<account>/<name>`` (intake: :mod:`controller.security.intake`).

``trigger``: ``{"type": "webhook", "body"}``, and for a run on request (``wfctl run``) also
``"source": "run"``, ``"input": {}`` and the ``"record"`` it was asked to run on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.engine.triggers import manual
from controller.engine.triggers.base import Given

TYPE = "webhook"


def payload(body: Any) -> dict[str, Any]:
    return {"type": TYPE, "body": body}


def record_ref(trigger: Mapping[str, Any]) -> dict[str, str] | None:
    return manual.record_ref(trigger)


def sample(spec: Mapping[str, Any], given: Given) -> dict[str, Any]:
    return manual.on_request(TYPE, given.record, given.payload, source="dry-run", synthetic=given.synthetic)
