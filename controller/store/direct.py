"""Statements run straight on the driver's cursor: compiled once, values converted by their columns' types.

SQLAlchemy's ``Connection.execute`` spends more per call than SQLite spends writing a few small rows: an
execution context, the parameters' processing and key checks, events, the result's set-up (about a quarter
of the engine's time per execution went there). :func:`executemany` keeps what makes it correct (the SQL of
the statement as SQLAlchemy compiles it for the dialect, each value converted by its column type's own bind
processor, so a row is stored exactly as ``conn.execute`` would store it) and drops the rest: the compiled
form is kept per statement and set of parameter names, and the rows go to the driver's ``executemany`` in the
connection's transaction. For INSERT, UPDATE and upserts without RETURNING; every parameter is given (no
column defaults are filled in). :func:`execute` runs one row and answers its rowcount (one statement, one
row: what it inserted or changed, on SQLite and psycopg alike), and :func:`first` answers the first row of
a SELECT, its values converted by the selected columns' result processors (SQLite's 0/1 become booleans).
The hot statements of every execution and every webhook use them.
"""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import UpdateBase

__all__ = ["execute", "executemany", "first"]


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


def execute(conn: Connection, statement: UpdateBase, values: Mapping[str, Any]) -> int:
    """Run ``statement`` once with ``values`` in ``conn``'s transaction; the number of rows it wrote."""
    plan = _plan(statement, conn.dialect, tuple(values))
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(plan.sql, plan.row(values))
        return int(cursor.rowcount)
    finally:
        cursor.close()


def first(conn: Connection, query: Select[Any], values: Mapping[str, Any]) -> Any:
    """The first row of ``query`` with ``values``, as a named tuple of its columns' keys, or None."""
    plan = _plan(query, conn.dialect, tuple(values))
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(plan.sql, plan.row(values))
        found = cursor.fetchone()
    finally:
        cursor.close()
    if found is None:
        return None
    make, processors = _reader(query, conn.dialect)
    return make(*(value if process is None else process(value) for value, process in zip(found, processors)))


@functools.lru_cache(maxsize=64)
def _reader(query: Select[Any], dialect: Dialect) -> tuple[Any, tuple[Callable[[Any], Any] | None, ...]]:
    columns = list(query.selected_columns)
    make = namedtuple("Row", [c.key for c in columns])  # type: ignore[misc]
    return make, tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)


@functools.lru_cache(maxsize=256)
def _plan(statement: UpdateBase | Select[Any], dialect: Dialect, keys: tuple[str, ...]) -> _Plan:
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
