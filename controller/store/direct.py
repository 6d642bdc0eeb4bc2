"""Writes of many small rows straight to the driver's cursor: compiled once, values converted by their columns' types.

SQLAlchemy's ``Connection.execute`` spends more per call than SQLite spends writing a few small rows: an
execution context, the parameters' processing and key checks, events, the result's set-up (about a quarter
of the engine's time per execution went there). :func:`executemany` keeps what makes it correct (the SQL of
the statement as SQLAlchemy compiles it for the dialect, each value converted by its column type's own bind
processor, so a row is stored exactly as ``conn.execute`` would store it) and drops the rest: the compiled
form is kept per statement and set of parameter names, and the rows go to the driver's ``executemany`` in the
connection's transaction. For INSERT, UPDATE and upserts without RETURNING; every parameter is given (no
column defaults are filled in).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import UpdateBase

__all__ = ["executemany"]


@dataclass(frozen=True)
class _Plan:
    """A statement compiled for one dialect and one set of parameter names."""

    sql: str
    names: tuple[str, ...]  # the parameters in the order the driver takes them
    positional: bool  # qmark (SQLite): a tuple per row; else a dict per row (psycopg)
    convert: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, bind processor) of the values to convert

    def row(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        row = [values[name] for name in self.names]
        for at, process in self.convert:
            row[at] = process(row[at])
        return tuple(row) if self.positional else dict(zip(self.names, row))


def executemany(conn: Connection, statement: UpdateBase, rows: Sequence[Mapping[str, Any]]) -> None:
    """Run ``statement`` once per row of ``rows`` (each with the same keys) in ``conn``'s transaction."""
    if not rows:
        return
    plan = _plan(statement, conn.dialect, tuple(rows[0]))
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        converted: list[Any] = [plan.row(row) for row in rows]
        cursor.executemany(plan.sql, converted)
    finally:
        cursor.close()


@functools.lru_cache(maxsize=256)
def _plan(statement: UpdateBase, dialect: Dialect, keys: tuple[str, ...]) -> _Plan:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    binds = compiled.binds
    if any(bind.expanding for bind in binds.values()):
        raise ValueError(f"executemany takes no expanding parameters: {compiled}")
    names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(binds)
    missing = sorted(set(names) - set(keys))
    if missing:  # a column default SQLAlchemy would have filled in: give it in the rows
        raise ValueError(f"rows lack {', '.join(missing)} for {compiled}")
    processors = [binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names]
    convert = tuple((at, process) for at, process in enumerate(processors) if process is not None)
    return _Plan(str(compiled), names, bool(compiled.positional), convert)
