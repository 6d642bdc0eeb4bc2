"""Leadership: one replica at a time runs the singletons, by a lease row in the store.

Every `wfctl serve` writes its row in ``replicas`` at each heartbeat (every third of the lease time)
and tries to take or renew the one row of ``leader`` in the same short transaction: a renewal keeps
the ``generation``, a take-over (the lease expired, or was released) adds one to it. Nothing is held
between transactions, so it works behind PgBouncer in transaction mode, where a session advisory lock
would be taken by whichever client the pooler gave the server connection to next.

Fencing: every leader-only write calls :meth:`Leadership.fence` inside its own transaction. On
PostgreSQL it reads the lease row ``FOR SHARE``: a take-over's ``UPDATE`` waits for that write to commit,
and a write that starts after the take-over sees the new generation and raises :class:`NotLeader`, so
its transaction rolls back. A leader paused past its lease (a GC pause, a stopped VM) therefore never
writes once another replica took over.

Clock: on PostgreSQL every time here is the database's ``now()``, one clock for all replicas, so clock
skew between machines cannot make two of them think they lead. On SQLite there is one process (the file
lock beside the database excludes a second one), so its own clock is the only one; the lease row is
still written there, so ``wfctl status`` shows the same thing on both. Tests may hand in a clock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from controller import __version__
from controller.datadir import PRIVATE_FILE
from controller.errors import ConflictError, StoreError
from controller.store.db import Store
from controller.store.tables import as_utc, leader, replicas

log = logging.getLogger(__name__)

NAME = "controller"
DEFAULT_TTL = 15.0
SEEN = 3  # a replica is seen recently when it beat within this many of its lease times
FORGOTTEN = 10  # the leader deletes replica rows silent for this many lease times


class NotLeader(ConflictError):
    """A leader-only write found that this replica no longer holds the lease; it wrote nothing.

    Another replica took over (or the lease ran out while this one was paused or cut off): this one
    stops acting as leader and tries for the lease again at its next heartbeat.
    """


def store_now(conn: Connection, clock: Callable[[], datetime] | None = None) -> datetime:
    """The lease clock: ``clock`` when given, else the database's (PostgreSQL) or this process's (SQLite)."""
    if clock is not None:
        return clock()
    if conn.dialect.name == "postgresql":
        return as_utc(conn.execute(select(func.now())).scalar_one())
    return datetime.now(UTC)


class Leadership:
    """This replica's lease: :meth:`held` beats, :meth:`fence` guards a leader-only write.

    ``generation`` is the lease generation while this replica leads, else None.
    """

    def __init__(self, store: Store, data_dir: Path, ttl: float = DEFAULT_TTL,
                 clock: Callable[[], datetime] | None = None):
        self.store = store
        self.data_dir = data_dir
        self.ttl = ttl
        self.clock = clock
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.generation: int | None = None
        self._file: Any = None
        self._started: datetime | None = None
        self._lock = threading.Lock()  # beats and fences run in different threads

    @property
    def leading(self) -> bool:
        return self.generation is not None

    def held(self) -> bool:
        """One heartbeat: take or renew the lease and write this replica's row; True while it leads.

        A store that cannot be reached raises (:class:`StoreError`) and this replica stops leading: it
        cannot renew, so another may take over once the lease runs out.
        """
        with self._lock:
            try:
                with self.store.tx() as conn:
                    now = store_now(conn, self.clock)
                    generation = self._lease(conn, now)
                    self._beat(conn, now, generation)
                    if generation is not None:
                        conn.execute(delete(replicas).where(
                            replicas.c.heartbeat_at < now - timedelta(seconds=FORGOTTEN * self.ttl)))
                self.generation = generation  # once the lease is committed: a fence before then refuses
            except Exception:
                self.generation = None
                raise
            return generation is not None

    def fence(self, conn: Connection) -> int:
        """The generation this replica leads with; :class:`NotLeader` unless it still holds the lease, in
        ``conn``'s transaction.

        Call it in the transaction of a leader-only write, before writing: on PostgreSQL the lease row is
        read ``FOR SHARE``, so no take-over commits between this check and the write's commit.
        """
        held = self.generation
        if held is None:
            raise NotLeader("this replica does not hold the leader lease; the leader's loops run elsewhere")
        query = select(leader.c.holder, leader.c.generation, leader.c.expires_at).where(leader.c.name == NAME)
        postgres = conn.dialect.name == "postgresql"
        row = conn.execute(query.with_for_update(read=True) if postgres else query).one_or_none()
        # SQLite: the file lock keeps a second process out, so only a moved generation can mean a loss
        expired = postgres and row is not None and as_utc(row.expires_at) <= store_now(conn, self.clock)
        if row is None or row.holder != self.id or row.generation != held or expired:
            self.generation = None
            now_held = f"generation {row.generation} by {row.holder}" if row is not None else "nobody"
            raise NotLeader(f"lost the leader lease (generation {held}; now {now_held}{', expired' if expired else ''}); "
                            "it stops acting as leader until a heartbeat takes the lease again")
        return held

    def release(self) -> None:
        """Give the lease up (a clean stop: another replica takes over at once) and remove this replica's row."""
        with self._lock:
            held, self.generation = self.generation, None
            if self._started is None:  # never beat (a worker process): nothing to give up
                return
            try:
                with self.store.tx() as conn:
                    now = store_now(conn, self.clock)
                    if held is not None:
                        conn.execute(update(leader).where(leader.c.name == NAME, leader.c.holder == self.id,
                                                          leader.c.generation == held)
                                     .values(holder=None, expires_at=now))
                    conn.execute(delete(replicas).where(replicas.c.id == self.id))
            except (StoreError, SQLAlchemyError) as e:  # stopping anyway: the lease runs out and the row is forgotten by the leader
                log.warning("could not release the leader lease: %s", e)
            if self._file is not None:
                self._file.close()
                self._file = None

    def _lease(self, conn: Connection, now: datetime) -> int | None:
        """The generation this replica leads with after this beat, or None."""
        until = now + timedelta(seconds=self.ttl)
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(dialect.insert(leader).values(name=NAME, holder=None, generation=0, expires_at=now)
                     .on_conflict_do_nothing(index_elements=["name"]))
        held = self.generation  # once: a fence in another thread may drop it meanwhile
        if held is not None:  # a renewal keeps the generation
            renewed = conn.execute(update(leader).where(leader.c.name == NAME, leader.c.holder == self.id,
                                                        leader.c.generation == held)
                                   .values(expires_at=until))
            if renewed.rowcount:
                return held
            log.warning("lost the leader lease (generation %d): another replica took over", held)
        if conn.dialect.name != "postgresql":
            if not self._file_lock():
                return None
            taking = update(leader).where(leader.c.name == NAME)  # the file lock says the last holder is gone
        else:
            # (its own lease too: one it stopped trusting, after a failed beat, is taken again as new)
            taking = update(leader).where(leader.c.name == NAME, or_(leader.c.holder.is_(None), leader.c.holder == self.id,
                                                                     leader.c.expires_at < now))
        generation = conn.execute(taking.values(holder=self.id, generation=leader.c.generation + 1, expires_at=until)
                                  .returning(leader.c.generation)).scalar_one_or_none()
        if generation is not None:
            log.info("took the leader lease (generation %d) as %s", generation, self.id)
        return generation

    @property
    def lock_path(self) -> Path:
        """The SQLite lease's lock: beside the database file (every process serving that file, whatever its
        data directory, locks the same one), or in the data directory for an in-memory database."""
        database = self.store.engine.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            return Path(f"{database}-leader.lock")
        return self.data_dir / "leader.lock"

    def _file_lock(self) -> bool:
        """The lock beside a SQLite database: one leading process per store, held for the process's life."""
        if self._file is not None:
            return True
        path = self.lock_path
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE), "w")  # held for the process's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def _beat(self, conn: Connection, now: datetime, generation: int | None) -> None:
        self._started = self._started or now
        row = {"id": self.id, "host": socket.gethostname(), "pid": os.getpid(), "version": __version__,
               "role": "leader" if generation is not None else "follower", "ttl": self.ttl,
               "started_at": self._started, "heartbeat_at": now}
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(replicas).values(row)
        conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_={
            "role": stmt.excluded.role, "heartbeat_at": stmt.excluded.heartbeat_at, "ttl": stmt.excluded.ttl}))


def recent(conn: Connection, clock: Callable[[], datetime] | None = None) -> list[dict[str, Any]]:
    """The replicas that beat within :data:`SEEN` of their lease times, leader first: id, host, pid, role
    (``leader`` for the holder of the unexpired lease), version, started_at and heartbeat_at (ISO 8601),
    age (seconds since the heartbeat)."""
    now = store_now(conn, clock)
    lease = conn.execute(select(leader.c.holder, leader.c.expires_at).where(leader.c.name == NAME)).first()
    # the role is the lease's, not the row's: a leader killed a moment ago still has its last row
    holder = lease.holder if lease is not None and as_utc(lease.expires_at) > now else None
    seen = []
    for row in conn.execute(select(replicas).order_by(replicas.c.id)).mappings():
        age = (now - as_utc(row["heartbeat_at"])).total_seconds()
        if age <= SEEN * row["ttl"]:
            role = "leader" if row["id"] == holder else "follower"
            seen.append({"id": row["id"], "host": row["host"], "pid": row["pid"], "role": role,
                         "version": row["version"], "started_at": as_utc(row["started_at"]).isoformat(),
                         "heartbeat_at": as_utc(row["heartbeat_at"]).isoformat(), "age": round(max(age, 0.0), 1)})
    return sorted(seen, key=lambda replica: replica["role"] != "leader")
