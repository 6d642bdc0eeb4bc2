"""Group commit: pieces of many threads in one transaction, each answered after the commit, failures alone."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from controller.store import open_store
from controller.store.db import after_commit, gather
from controller.store.group import GroupCommit


class Boom(Exception):
    pass


def test_pieces_queued_behind_a_writer_commit_together_and_a_failing_one_alone_rolls_back(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    with store.tx() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
    group = GroupCommit(store)
    release, queued = threading.Event(), threading.Event()
    committed: list[int] = []
    flushed: list[list[int]] = []
    answers: dict[int, object] = {}

    def flush(conn: Connection, values: list[int]) -> None:
        flushed.append(sorted(values))

    def work(n: int):  # type: ignore[no-untyped-def]
        def piece(conn: Connection) -> int:
            if n == 0:  # the first holds the transaction until every other piece waits behind it
                queued.wait(10)
                release.wait(10)
            conn.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
            after_commit(conn, lambda: committed.append(n))
            gather(conn, flush, n)
            if n % 4 == 3:
                raise Boom(n)
            return n * 10
        return piece

    def call(n: int) -> None:
        try:
            answers[n] = group.run(work(n))
        except Boom as e:
            answers[n] = e

    first = threading.Thread(target=call, args=(0,))
    first.start()
    others = [threading.Thread(target=call, args=(n,)) for n in range(1, 12)]
    for thread in others:
        thread.start()
    while len(group._queue) < 11:  # (they queue behind the leader's open transaction)
        threading.Event().wait(0.01)
    queued.set()
    release.set()
    for thread in [first, *others]:
        thread.join(10)

    with store.read() as conn:
        rows = sorted(conn.execute(text("SELECT n FROM t")).scalars())
    store.close()
    kept = [n for n in range(12) if n % 4 != 3]
    assert rows == kept  # the failing pieces' rows are gone, the others' are all there
    assert sorted(committed) == kept  # after-commit callbacks of failed pieces were dropped
    assert sorted(v for batch in flushed for v in batch) == kept
    assert len(flushed) == 2  # the leader alone, then the eleven queued behind it in one transaction
    for n in range(12):
        assert isinstance(answers[n], Boom) if n % 4 == 3 else answers[n] == n * 10


def test_a_failed_commit_fails_every_caller_of_the_group(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    with store.tx() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
    group = GroupCommit(store)

    def broken_flush(conn: Connection, values: list[int]) -> None:
        raise RuntimeError("disk full")

    def piece(conn: Connection) -> int:
        conn.execute(text("INSERT INTO t (n) VALUES (1)"))
        gather(conn, broken_flush, 1)
        return 1

    with pytest.raises(RuntimeError, match="disk full"):
        group.run(piece)
    with store.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
    store.close()


def test_a_piece_whose_statement_fails_rolls_back_alone_on_every_back_end(store_url: str) -> None:
    """A statement error (here a duplicate key) aborts a PostgreSQL transaction until the piece's savepoint
    is rolled back: the pieces after it in the group still write, and commit."""
    store = open_store(store_url)
    with store.tx() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t (n) VALUES (2)"))
    group = GroupCommit(store)
    release = threading.Event()
    answers: dict[int, object] = {}

    def work(n: int):  # type: ignore[no-untyped-def]
        def piece(conn: Connection) -> int:
            if n == 0:
                release.wait(10)
            conn.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
            return n
        return piece

    def call(n: int) -> None:
        try:
            answers[n] = group.run(work(n))
        except Exception as e:  # noqa: BLE001 - kept for the assertion
            answers[n] = e

    threads = [threading.Thread(target=call, args=(n,)) for n in range(5)]
    threads[0].start()
    while not group._leading:
        threading.Event().wait(0.01)
    for thread in threads[1:]:
        thread.start()
    while len(group._queue) < 4:
        threading.Event().wait(0.01)
    release.set()
    for thread in threads:
        thread.join(10)
    with store.read() as conn:
        rows = sorted(conn.execute(text("SELECT n FROM t")).scalars())
    store.close()
    assert rows == [0, 1, 2, 3, 4]
    assert isinstance(answers[2], Exception) and [answers[n] for n in (0, 1, 3, 4)] == [0, 1, 3, 4]
