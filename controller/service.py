"""`wfctl serve`: the reconcile loop, the scheduler and the workers.

Any number of processes may serve one store: every one runs workers (executions are claimed
under leases; in threads of the serve process or in its worker processes,
:mod:`controller.processes`), but only the leader runs the reconciler, the schedule jobs and the
inactivity scan, the purge and the alerts (``LEADER_LOOPS``). Leadership is a lease row in the store
(:mod:`controller.store.leadership`): a heartbeat thread takes or renews it every third of the lease time
(``--lease-ttl``), a replica that gains it kicks the leader's loops (which start the scheduler and so
re-register the schedules from the store), one that loses it stops the scheduler, and every leader-only
write is fenced by the lease generation, so a paused old leader writes nothing after a take-over.
On SQLite the lease sits behind a file lock beside the database (one serving process).
SIGTERM stops taking work, lets in-flight steps finish, releases leases and exits. Every loop is
supervised (:mod:`controller.supervision`): a pass that raises is logged, reported and retried after a
back-off; it never ends its loop.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError

from controller.config import Config
from controller.engine.runtime import Engine
from controller.engine.scheduler import Schedules
from controller.engine.triggers import inactivity
from controller.errors import SourceError, StoreError, UnverifiedCommit
from controller.metrics import prom, rollup
from controller.processes import WorkerProcesses
from controller.reconcile.reconciler import Reconciler
from controller.safeguards import alerts, delivery
from controller.store import decisions, retention
from controller.store.leadership import DEFAULT_TTL, Leadership, NotLeader
from controller.store.tables import schedule_fires
from controller.supervision import Supervisor
from controller.workers import Workers

log = logging.getLogger(__name__)

LEADER_LOOPS = ("reconcile", "scheduler", "inactivity", "purge", "alerts")


@dataclass
class ServeOptions:
    interval: float = 60.0
    workers: int = 4
    idle_poll: float = 0.5
    timeline_retention: float = 7 * 86400  # seconds trigger decisions are kept
    execution_retention: float | None = None  # seconds finished executions are kept (None: forever)
    metrics_retention: float = 90 * 86400  # seconds daily (and per-action) metric buckets are kept
    purge_every: float = 600.0  # seconds between purges of old decisions, executions and buckets
    lease_ttl: float = DEFAULT_TTL  # seconds the leader lease lasts unrenewed: the bound on a take-over

    @classmethod
    def of(cls, config: Config, **options: Any) -> ServeOptions:
        """Options with the retention periods of the configuration."""
        return cls(timeline_retention=config.timeline_retention_seconds,
                   execution_retention=config.execution_retention_seconds,
                   metrics_retention=config.metrics_retention_seconds, **options)


class Controller:
    """Runs until :meth:`stop`; build one per process."""

    def __init__(self, reconciler: Reconciler | None, engine: Engine, options: ServeOptions,
                 after_sync: Callable[[], object] | None = None, processes: WorkerProcesses | None = None):
        """Without a ``reconciler`` it runs the workers only (a worker process); with ``processes`` the
        workers run there instead of in threads of this process."""
        self.reconciler = reconciler
        self.processes = processes
        self.engine = engine
        self.options = options
        self.after_sync = after_sync  # e.g. give newly applied webhook workflows their signing secret
        self.leadership = Leadership(engine.store, engine.data_dir, options.lease_ttl)
        self.schedules = Schedules(engine, self.leadership.fence)
        if reconciler is not None:
            reconciler.fence = self.leadership.fence
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._threads: list[threading.Thread] = []
        self._purged: datetime | None = None
        self._leading = False
        self._scheduling = False
        self.supervisor = Supervisor(engine.store, engine.owner)

    def start(self) -> None:
        self._threads = []
        if self.reconciler is not None:
            for name in LEADER_LOOPS:
                self.supervisor.loop(name, self.options.interval)
            self.supervisor.on_failure["reconcile"] = self._reconcile_failed
            self._beat()  # before the first pass, so a lone replica leads from its first round
            self._threads.append(threading.Thread(target=self._lease_loop, name="lease", daemon=True))
            self._threads.append(threading.Thread(target=self._reconcile_loop, name="reconcile", daemon=True))
        if self.processes is not None:
            self.processes.start()
        else:
            self._threads += Workers(self.engine, self.supervisor, self.options.workers, self.options.idle_poll,
                                     self._stop).threads()
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 9.0) -> None:
        """Stop taking work; in-flight steps finish and their executions are released."""
        self._stop.set()
        self._kick.set()
        if self.processes is not None:
            self.processes.stop(timeout)
        for thread in self._threads:
            thread.join(timeout)
        self.schedules.shutdown()
        self.leadership.release()

    def wait(self) -> None:
        self._stop.wait()

    def sync_now(self) -> None:
        """Start a reconcile pass at once (a git push hook); bursts coalesce into one pass."""
        self._kick.set()

    def _reconcile_loop(self) -> None:
        """The leader's loops, one supervised pass each per round: a failing one holds back no other."""
        while not self._stop.is_set():
            self._leading = self.leadership.leading
            if not self._leading and self._scheduling:
                self._stop_scheduling()
            self.supervisor.run_pass("reconcile", self._fenced(self._reconcile))
            if self._leading:  # also when the pass failed: a broken reconcile holds back no schedule
                self.supervisor.run_pass("scheduler", self._fenced(self._schedule))
                self.supervisor.run_pass("inactivity", self._fenced(self._inactivity))
                self.supervisor.run_pass("purge", self._fenced(self.purge))
                self.supervisor.run_pass("alerts", self._fenced(self.notify))
            self.supervisor.report()
            wait = max(self.supervisor.backoff(name) for name in LEADER_LOOPS)
            self._kick.wait(wait * random.uniform(0.9, 1.1))
            self._kick.clear()
        self.supervisor.report(force=True)

    def _beat(self) -> None:
        """One heartbeat of the lease; a change of role kicks the leader's loops to start or stop."""
        was = self.leadership.leading
        try:
            self.leadership.held()
        except (StoreError, SQLAlchemyError) as e:  # the store is unreachable: not leading until a beat gets through
            log.warning("leader lease heartbeat failed: %s", e)
        if self.leadership.leading != was:
            self._kick.set()

    def _lease_loop(self) -> None:
        while not self._stop.wait(self.leadership.ttl / 3):
            self._beat()

    def _fenced(self, loop: Callable[[], object]) -> Callable[[], None]:
        """``loop`` as one pass that ends quietly when the lease turns out lost: it wrote nothing, and the
        next round runs as a follower."""
        def run() -> None:
            try:
                loop()
            except NotLeader as e:
                log.warning("%s", e)
                self._leading = False
        return run

    def _stop_scheduling(self) -> None:
        """Lost the lease: no schedule job runs here any more (the new leader's scheduler runs them)."""
        self.schedules.shutdown()
        self.schedules = Schedules(self.engine, self.leadership.fence)
        self._scheduling = False
        log.info("stopped the schedules: this replica no longer leads")

    def _reconcile(self) -> None:
        assert self.reconciler is not None  # (the loop runs only with one)
        if not self._leading:
            return
        started = time.perf_counter()
        try:
            plan = self.reconciler.sync()
        except UnverifiedCommit as e:  # not a failing loop: the source shows SourceVerified=False, the last
            # verified state keeps running, and the next pass looks at the branch again
            log.warning("not applied: %s", e)
            prom.reconcile_pass("refused", time.perf_counter() - started)
            return
        except Exception:
            prom.reconcile_pass("failed", time.perf_counter() - started)
            raise
        finally:
            self.reconciler.source.rest()  # no git process waits for the next pass
        prom.reconcile_pass("unchanged" if plan.empty else "applied", time.perf_counter() - started)
        if self.after_sync is not None:
            self.after_sync()

    def _reconcile_failed(self, error: BaseException) -> None:
        if not isinstance(error, SourceError) and self.reconciler is not None:  # a git failure is on the source
            self.reconciler.record_failure(error)

    def _schedule(self) -> None:
        if not self._scheduling:
            self.schedules.start()
            self._scheduling = True
        else:
            self.schedules.register()

    def _inactivity(self) -> None:
        with self.engine.store.tx() as conn:
            self.leadership.fence(conn)
            started = inactivity.scan(self.engine, conn)
        if started:
            log.info("inactivity started %d execution(s)", len(started))

    def purge(self) -> int:
        """Forget trigger decisions, finished executions and metric buckets older than their
        retention; at most once per ``purge_every``. Returns how many decisions and executions went."""
        now = self.engine.clock.now()
        if self._purged is not None and (now - self._purged).total_seconds() < self.options.purge_every:
            return 0
        with self.engine.store.tx() as conn:
            self.leadership.fence(conn)
            purged = decisions.purge(conn, now - timedelta(seconds=self.options.timeline_retention))
            rollup.prune(conn, now, timedelta(seconds=self.options.metrics_retention))
            # the fires are kept as long as the decisions: long past any take-over that could repeat one
            conn.execute(delete(schedule_fires).where(
                schedule_fires.c.fire_at < now - timedelta(seconds=self.options.timeline_retention)))
        pruned = 0
        if self.options.execution_retention is not None:
            before = now - timedelta(seconds=self.options.execution_retention)
            while True:  # in batches, each its own short transaction: workers keep committing meanwhile
                with self.engine.store.tx() as conn:
                    self.leadership.fence(conn)
                    batch = retention.prune_executions(conn, before)
                pruned += batch
                if not batch or self._stop.is_set():
                    break
        self._purged = now
        if purged or pruned:
            log.info("forgot %d trigger decision(s) and %d finished execution(s) past their retention", purged, pruned)
        return purged + pruned

    def notify(self) -> int:
        """Resolve alerts that went quiet, remind of those still open, send the notifications that are due;
        returns how many went out."""
        now = self.engine.clock.now()
        with self.engine.store.tx() as conn:
            self.leadership.fence(conn)
            alerts.resolve_quiet(conn, self.engine.config, now)
            alerts.remind(conn, self.engine.config, now)
        return delivery.deliver_due(self.engine.store, self.engine.config, now, clients=self.engine.http,
                                    fence=self.leadership.fence)
