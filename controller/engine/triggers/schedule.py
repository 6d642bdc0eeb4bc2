"""``schedule``: a cron line or an interval came round (the jobs are in :mod:`controller.engine.scheduler`).

``trigger``: ``{"type": "schedule", "scheduled_at"}``; the execution is about no record.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from controller.engine.triggers.base import Given

TYPE = "schedule"


def payload(scheduled_at: datetime | None) -> dict[str, Any]:
    return {"type": TYPE, "scheduled_at": scheduled_at.isoformat() if scheduled_at else None}


def record_ref(trigger: Mapping[str, Any]) -> dict[str, str] | None:
    return None


def sample(spec: Mapping[str, Any], given: Given) -> dict[str, Any]:
    return payload(given.now)
