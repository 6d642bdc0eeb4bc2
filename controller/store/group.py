"""Group commit: the short write transactions of many threads run as one transaction.

Under load the webhook threads each open, lock and commit a transaction for a few rows; the
opening, the commit and the hand-over of SQLite's write lock cost more than the rows. With
:class:`GroupCommit`, a thread that asks to write while another is writing queues its work; the
writing thread (the leader) takes everything queued, runs each piece in a savepoint of one
transaction, commits once, and only then answers each thread: every caller still returns only
once its rows are durable. A piece that raises rolls back its savepoint alone (and drops what it
had queued for :func:`~controller.store.db.after_commit` or :func:`~controller.store.db.gather`),
and its caller gets the exception; if the commit itself fails, every caller of the group does.

With no one else writing, a caller leads a group of one: nothing waits for a group to fill.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from controller.store.db import AFTER_COMMIT, GATHERED, Store

T = TypeVar("T")

MAX_GROUP = 64  # pieces per transaction: bounds how long the first of a group waits for its answer


@dataclass
class _Piece(Generic[T]):
    work: Callable[[Connection], T]
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # handed the leadership instead of an answer
    finished: bool = False
    value: Any = None
    error: BaseException | None = None


class GroupCommit:
    """Runs ``work(conn)`` pieces of many threads in shared transactions of ``store``."""

    def __init__(self, store: Store, max_group: int = MAX_GROUP):
        self.store = store
        self.max_group = max_group
        self._lock = threading.Lock()
        self._queue: list[_Piece[Any]] = []
        self._leading = False

    def run(self, work: Callable[[Connection], T]) -> T:
        """``work(conn)`` in a write transaction, committed before this returns; its value or its exception."""
        piece: _Piece[T] = _Piece(work)
        with self._lock:
            self._queue.append(piece)
            lead = not self._leading
            self._leading = True
        if not lead:
            piece.done.wait()
            lead = piece.lead
        while lead and not piece.finished:
            with self._lock:
                group, self._queue = self._queue[:self.max_group], self._queue[self.max_group:]
            self._commit(group)
            with self._lock:
                if not piece.finished:
                    continue
                if self._queue:  # the next in line leads the next group
                    self._queue[0].lead = True
                    self._queue[0].done.set()
                else:
                    self._leading = False
        if piece.error is not None:
            raise piece.error
        return piece.value  # type: ignore[no-any-return]

    def _commit(self, group: list[_Piece[Any]]) -> None:
        try:
            with self.store.tx() as conn:
                if len(group) == 1:  # alone, its transaction is its savepoint
                    group[0].value = group[0].work(conn)
                else:
                    for piece in group:
                        self._run(conn, piece)
        except BaseException as e:  # noqa: BLE001 - the commit failed: no piece holds, and every caller must hear
            for piece in group:
                piece.error = piece.error or e
        for piece in group:
            piece.finished = True
            piece.done.set()

    @staticmethod
    def _run(conn: Connection, piece: _Piece[Any]) -> None:
        callbacks: list[Any] = conn.info[AFTER_COMMIT]
        gathered: dict[Any, list[Any]] = conn.info[GATHERED]
        marks = len(callbacks), {flush: len(values) for flush, values in gathered.items()}
        # The savepoint on the driver's cursor: SQLAlchemy's begin_nested() and its commit cost more Python
        # than the piece's own statements, all of it under the store's write lock.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute("SAVEPOINT wfc_piece")
            try:
                piece.value = piece.work(conn)
            except BaseException as e:  # noqa: BLE001 - handed to its caller, who re-raises it
                cursor.execute("ROLLBACK TO SAVEPOINT wfc_piece")
                piece.error = e
                del callbacks[marks[0]:]
                for flush, values in list(gathered.items()):
                    del values[marks[1].get(flush, 0):]
            cursor.execute("RELEASE SAVEPOINT wfc_piece")
        finally:
            cursor.close()
