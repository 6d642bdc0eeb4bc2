"""The workflows of a trigger type: applied, not deleted, with their current definition.

An event (a record written, a message delivered) asks admission for every workflow of its type,
disabled ones too, so that a record's timeline says "refused: disabled" instead of nothing; the
schedule jobs and the inactivity scan, which poll, ask only for enabled ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, select

from controller.engine.admission import TARGET_COLUMNS, Target
from controller.store.tables import workflow_versions, workflows


@dataclass(frozen=True)
class Listener:
    """A workflow listening for a trigger type, as admission sees it, and its current definition."""

    target: Target
    definition: Mapping[str, Any]

    @property
    def key(self) -> str:
        return self.target.key

    @property
    def account(self) -> str:
        return self.target.account

    @property
    def version(self) -> int:
        return self.target.version

    @property
    def trigger(self) -> Mapping[str, Any]:
        return self.definition["spec"]["trigger"]  # type: ignore[no-any-return]


def listeners(conn: Connection, trigger_type: str, account: str | None = None, *,
              enabled_only: bool = True) -> Iterator[Listener]:
    w, v = workflows.c, workflow_versions.c
    query = (
        select(*TARGET_COLUMNS, v.content)
        .join(workflow_versions, and_(v.workflow_id == w.id, v.version == w.version))
        .where(w.trigger_type == trigger_type, w.deleted.is_(False), w.content_hash.is_not(None))
        .order_by(w.key)
    )
    if enabled_only:
        query = query.where(w.enabled.is_(True))
    if account is not None:
        query = query.where(w.account == account)
    for row in conn.execute(query):
        yield Listener(Target.of(row), row.content)
