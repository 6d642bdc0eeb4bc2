"""Writing records of the built-in record store, and firing the ``record`` triggers they cause.

One transaction holds the write and the executions it starts. Used by ``wfctl records``, the API,
and by steps (``record.create``/``record.update``), whose writes trigger one level deeper so a
workflow that keeps updating the record it listens to stops at the engine's depth limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from controller.engine import unit
from controller.engine.triggers import record as record_trigger
from controller.model.entities import ENTITY_TYPES
from controller.store import records as record_store

if TYPE_CHECKING:
    from controller.engine.runtime import Engine


class RecordService:
    def __init__(self, engine: Engine, *, depth: int = 0):
        self.engine = engine
        self.depth = depth
        self.started: list[int] = []  # executions started by the writes, for callers that report them

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """The running step's transaction when there is one (its unit of work), else a new one."""
        joined = unit.bound()
        if joined is not None:
            yield joined
            return
        with self.engine.store.tx() as conn:
            yield conn

    def create(self, account: str, entity: str, data: dict[str, Any]) -> dict[str, Any]:
        with self._tx() as conn:
            record = record_store.create(conn, account, entity, data, self.engine.clock.now())
            self.started += record_trigger.fire(self.engine, conn, account, entity, "created", record,
                                                depth=self.depth)
        return record

    def update(self, account: str, entity: str, record_id: str, data: dict[str, Any], *,
               touch_activity: bool = True) -> dict[str, Any]:
        with self._tx() as conn:
            _, record = record_store.update(conn, account, entity, record_id, data, self.engine.clock.now(),
                                            touch_activity=touch_activity)
            self.started += record_trigger.fire(self.engine, conn, account, entity, "updated", record,
                                                depth=self.depth)
        return record

    def delete(self, account: str, entity: str, record_id: str) -> dict[str, Any]:
        with self._tx() as conn:
            record = record_store.delete(conn, account, entity, record_id, self.engine.clock.now())
            self.started += record_trigger.fire(self.engine, conn, account, entity, "deleted", record,
                                                depth=self.depth)
        return record


class StepRecords:
    """The record writer of ``record.create``/``record.update`` steps, over a :class:`RecordService`.

    A step names a custom type by its directory id (``ot_17``, resolved from ``object_type:ot_17``);
    the built-in store keeps such records under the type ``object_type:ot_17``.
    """

    def __init__(self, service: RecordService):
        self.service = service

    def create(self, account: str, entity: str, data: dict[str, Any]) -> dict[str, Any]:
        return self.service.create(account, _stored_type(entity), data)

    def update(self, account: str, entity: str, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        # A workflow's own bookkeeping is not activity: flagging a quiet lead must not restart
        # the quiet spell that an inactivity trigger measures.
        return self.service.update(account, _stored_type(entity), record_id, data, touch_activity=False)


def _stored_type(entity: str) -> str:
    return entity if entity in ENTITY_TYPES else f"object_type:{entity}"
