"""``call``: started by another workflow's ``workflow.call`` step (not a trigger type of the model).

``trigger``: ``{"type": "call", "input", "parent": {"execution", "workflow"}}``. The child is about
the same record as its parent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TYPE = "call"


def payload(input: Mapping[str, Any], parent: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": TYPE, "input": dict(input), "parent": dict(parent)}
