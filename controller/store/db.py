"""Opening the runtime store: engine, connection settings, migrations and the write lock.

SQLite (the embedded default, one file under the data directory) and PostgreSQL (production)
share one schema, created and upgraded by Alembic. Everything that writes a reconcile result does
so inside :meth:`Store.write`, which serialises writers: ``BEGIN IMMEDIATE`` on SQLite, a
transaction-scoped advisory lock on PostgreSQL.

On SQLite every write transaction first takes :class:`WriterLock`: the threads of a process queue
for it in Python and the processes on one file (``wfctl serve`` and its worker processes, a CLI
command beside them) queue on an ``flock`` of ``<file>-wlock``. Both wake a waiter the moment the
lock is free; left to SQLite's busy handler, waiters sleep in steps of up to 100 ms, which under
load costs more than the writes themselves.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from controller.datadir import PRIVATE_FILE, create_private, make_private
from controller.errors import StoreError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD = "0015"  # the newest migration's revision; tests/test_store.py checks it against Alembic's head
# Arbitrary but fixed: the advisory lock id every wfctl writer takes on PostgreSQL.
WRITE_LOCK_ID = 0x77666374  # "wfct"
AFTER_COMMIT = "wfc_after_commit"  # conn.info key: callbacks of the open transaction
GATHERED = "wfc_gathered"  # conn.info key: values gathered for one write just before the commit


def default_url(data_dir: Path) -> str:
    """The embedded default: a SQLite file in the data directory."""
    return f"sqlite:///{(data_dir / 'wfctl.db').resolve()}"


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself, so writers can ask for IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("wfc_write") else "DEFERRED"
        # On the driver's connection: exec_driver_sql's execution context cost more than the BEGIN, every transaction.
        conn.connection.dbapi_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]

    return engine


class WriterLock:
    """Reentrant within a thread; across processes an ``flock`` on ``path`` (None: this process only)."""

    def __init__(self, path: Path | None):
        self._thread = threading.RLock()
        self._path = path
        self._file: Any = None
        self._depth = 0

    def __enter__(self) -> None:
        self._thread.acquire()
        try:
            if self._depth == 0 and self._path is not None:
                if self._file is None:
                    try:
                        # Kept open for the store's life; private like the store it guards.
                        self._file = os.fdopen(os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND,
                                                       PRIVATE_FILE), "a+b")
                    except OSError:  # a read-only folder: SQLite's own lock still serialises writers
                        self._path = None
                if self._file is not None:
                    fcntl.flock(self._file, fcntl.LOCK_EX)  # (releases the GIL while it waits)
        except BaseException:
            self._thread.release()
            raise
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
        self._thread.release()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Store:
    """A handle on the SQL store; cheap to pass around, owns one SQLAlchemy engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        if engine.dialect.name != "sqlite":
            self.writer: Any = nullcontext()  # PostgreSQL has row locks; writers do not queue
        else:
            self.writer = WriterLock(Path(f"{database}-wlock") if database and database != ":memory:" else None)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection in a (deferred) transaction for consistent reads."""
        with self._guard(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """One writing transaction (``BEGIN IMMEDIATE`` on SQLite, so it never fails to upgrade).

        What :func:`after_commit` was given inside it runs once it has committed.
        """
        callbacks: list[Callable[[], None]] = []
        gathered: dict[Callable[[Connection, list[Any]], None], list[Any]] = {}
        with self.writer, self._guard(), self.engine.connect() as raw:
            conn = raw.execution_options(wfc_write=True)
            conn.info[AFTER_COMMIT], conn.info[GATHERED] = callbacks, gathered
            try:
                with conn.begin():
                    yield conn
                    for flush, values in gathered.items():
                        flush(conn, values)
            finally:
                del conn.info[AFTER_COMMIT], conn.info[GATHERED]
        for callback in callbacks:
            callback()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A writing transaction that also holds the reconciler's lock until it ends.

        On SQLite any writer excludes the others already; on PostgreSQL an advisory lock makes
        reconcile passes (and whatever must not interleave with them) take turns.
        """
        with self.tx() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": WRITE_LOCK_ID})
            yield conn

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as e:
            raise StoreError(f"store {self.safe_url} is not reachable: {one_line(e.orig)}") from e

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def upgrade(self, revision: str = "head") -> None:
        """Run every pending Alembic migration up to ``revision`` (idempotent)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            # Under the write lock, so two processes starting on a fresh store take turns: the second
            # waits for the first to commit, then finds the schema at head and does nothing.
            with self.tx() as conn:
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": WRITE_LOCK_ID})
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
        except SQLAlchemyError as e:
            raise StoreError(f"cannot migrate store {self.safe_url}: {one_line(getattr(e, 'orig', None) or e)}") from None

    def is_current(self) -> bool:
        """True when the schema is at the newest migration (:data:`HEAD`): one query, no Alembic import,
        which every command would otherwise pay for before its first step."""
        with self._guard(), self.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):  # a new store
                return False
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]

    def close(self) -> None:
        self.engine.dispose()
        if isinstance(self.writer, WriterLock):
            self.writer.close()


def open_store(url: str, *, upgrade: bool = True) -> Store:
    """Open the store at ``url``; with ``upgrade`` bring its schema up to date first."""
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise StoreError(f"bad database URL {url!r}: {e} (e.g. sqlite:///path/wfctl.db)") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _check_sqlite_path(Path(parsed.database))
            _private_files(Path(parsed.database))
        engine = _sqlite_engine(url)
    else:
        try:
            engine = create_engine(url, pool_pre_ping=True)
        except (ArgumentError, ImportError) as e:
            raise StoreError(f"cannot use database URL {parsed!r}: {e}") from None
    store = Store(engine)
    try:
        if upgrade and not store.is_current():
            log.info("upgrading store schema at %s", store.safe_url)
            store.upgrade()
    except SQLAlchemyError as e:  # not a database, read-only, locked, ...: one line, not a dump
        store.close()
        raise StoreError(f"cannot use the store at {store.safe_url}: {one_line(getattr(e, 'orig', None) or e)}") from None
    return store


def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
    """Run ``callback`` when the transaction of ``conn`` (one of :meth:`Store.tx`) has committed;
    never when it rolls back. Outside such a transaction, now."""
    pending = conn.info.get(AFTER_COMMIT)
    if pending is None:
        callback()
    else:
        pending.append(callback)


def gather(conn: Connection, flush: Callable[[Connection, list[Any]], None], value: Any) -> None:
    """Add ``value`` to what ``flush(conn, values)`` writes once, in the transaction of ``conn`` (one of
    :meth:`Store.tx`), just before it commits: many small writes of one kind become one. Outside such a
    transaction, ``flush(conn, [value])`` runs now."""
    pending = conn.info.get(GATHERED)
    if pending is None:
        flush(conn, [value])
    else:
        pending.setdefault(flush, []).append(value)


def one_line(error: object) -> str:
    """A driver's message on one line (psycopg's span several, with hints)."""
    return " ".join(str(error).split())


def _private_files(database: Path) -> None:
    """The SQLite file, created 0600 before SQLite creates it 0644: its -wal and -shm copy its mode.

    Files of an earlier run are made private too. A folder SQLite cannot write in is SQLite's to report.
    """
    try:
        create_private(database)
    except OSError:
        return
    for companion in ("-wal", "-shm", "-wlock"):
        make_private(Path(f"{database}{companion}"))


def _check_sqlite_path(path: Path) -> None:
    """A SQLite file's folder must exist (nothing is created outside the data directory unasked)."""
    if path.is_dir():
        raise StoreError(f"{path} is a folder; give the SQLite file's path, e.g. sqlite:///{path}/wfctl.db")
    if not path.parent.is_dir():
        raise StoreError(f"the folder {path.parent} of the SQLite store does not exist; create it, or pass another --db")
