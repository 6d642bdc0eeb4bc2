"""The step's unit of work: an internal effect and the step's checkpoint commit together.

A ``record.create`` or ``record.update`` step writes our own store. The runtime opens one
transaction around the action (:func:`bind`), the record writer joins it (:func:`bound`) instead
of committing on its own, and the checkpoint that marks the step succeeded is written in it too:
a crash at any point either keeps both or loses both, so a resumed run never makes the record
twice. The binding is a context variable, so each worker thread sees only its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import Connection

_BOUND: ContextVar[Connection | None] = ContextVar("wfc_step_transaction", default=None)


def bound() -> Connection | None:
    """The transaction of the step running in this thread, if it is inside a unit of work."""
    return _BOUND.get()


@contextmanager
def bind(conn: Connection) -> Iterator[Connection]:
    """Make ``conn`` the step's transaction for the writes inside the block."""
    token = _BOUND.set(conn)
    try:
        yield conn
    finally:
        _BOUND.reset(token)
