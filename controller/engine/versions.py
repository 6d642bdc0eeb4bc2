"""Applied versions by ``(workflow id, version)``: immutable once written, so cached per engine."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from controller.engine.interpreter import PURE
from controller.store.tables import workflow_versions

_MAX = 4096  # distinct versions kept; a repository holds a few thousand workflows at most


class Versions:
    """The normalized definition of each version the engine runs or admits for."""

    def __init__(self) -> None:
        self._contents: dict[tuple[int, int], Mapping[str, Any]] = {}
        self._pure: dict[tuple[int, int], bool] = {}
        self._lock = threading.Lock()

    def content(self, conn: Connection, workflow_id: int, version: int) -> Mapping[str, Any]:
        key = (workflow_id, version)
        found = self._contents.get(key)
        if found is None:
            v = workflow_versions.c
            found = conn.execute(select(v.content).where(v.workflow_id == workflow_id, v.version == version)
                                 ).scalar_one()
            self.remember(workflow_id, version, found)
        return found

    def pure(self, workflow_id: int, version: int, content: Mapping[str, Any]) -> bool:
        """Whether every action of the version (branches included) is pure (``set``, ``if``, ``wait``):
        nothing to repeat if a run of it is lost. Worked out once per version."""
        key = (workflow_id, version)
        found = self._pure.get(key)
        if found is None:
            def pure(actions: list[dict[str, Any]]) -> bool:
                return all(a["type"] in PURE and pure(a.get("then") or []) and pure(a.get("else") or [])
                           for a in actions)

            found = self._pure[key] = pure(content["spec"]["actions"])
        return found

    def remember(self, workflow_id: int, version: int, content: Mapping[str, Any]) -> None:
        with self._lock:
            if len(self._contents) >= _MAX:
                self._contents.clear()
                self._pure.clear()
            self._contents[(workflow_id, version)] = content
