"""Supervised loops: a pass that raises never ends the loop that runs it.

Every background loop of `wfctl serve` (reconcile, scheduler, inactivity scan, purge, each worker)
runs its passes through :meth:`Supervisor.run_pass`. A pass that raises is logged once at ERROR with
its traceback (repeats of the same failure without one), counted, and the loop backs off
(:meth:`Supervisor.backoff`) and runs its next pass; the first pass that succeeds again is logged
as a recovery. The health of every loop is reported to the store (:mod:`controller.store.loops`)
whenever it changes and as a heartbeat, so `/readyz` answers 503 while a loop has been failing for
longer than its interval, and `wfctl status` of any process shows it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.errors import StoreError
from controller.store import Store
from controller.store import loops as store_loops

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
MAX_BACKOFF_FACTOR = 8  # a failing loop waits at most 8 intervals between passes


def _now() -> datetime:
    return datetime.now(UTC)  # process health is wall-clock time, whatever clock the engine runs on


@dataclass
class Health:
    """One loop's recent passes."""

    name: str
    interval: float
    failures: int = 0
    failing_since: datetime | None = None
    error: str = ""
    last_ok_at: datetime | None = None

    def row(self) -> dict[str, Any]:
        return {"name": self.name, "interval_seconds": max(1, math.ceil(self.interval)), "failures": self.failures,
                "failing_since": self.failing_since, "error": self.error, "last_ok_at": self.last_ok_at}


class Supervisor:
    """The loops of one process; thread-safe."""

    def __init__(self, store: Store, owner: str, clock: Callable[[], datetime] = _now) -> None:
        self.store = store
        self.owner = owner
        self.clock = clock
        self.health: dict[str, Health] = {}
        self._lock = threading.Lock()
        self._reported: datetime | None = None
        self._changed = True
        # Called with the loop's name and the error when a pass fails (the reconciler marks its source).
        self.on_failure: dict[str, Callable[[BaseException], None]] = {}

    def loop(self, name: str, interval: float) -> Health:
        with self._lock:
            return self.health.setdefault(name, Health(name, interval))

    def run_pass(self, name: str, body: Callable[[], Any]) -> bool:
        """Run one pass of loop ``name``; False when it raised (it is logged, counted and reported)."""
        health = self.health[name]
        try:
            body()
        except Exception as error:  # noqa: BLE001 - whatever a pass raises, the loop must go on
            self._failed(health, error)
            return False
        if health.failures:
            log.info("%s loop recovered after %d failed pass(es)", name, health.failures)
            with self._lock:
                health.failures, health.failing_since, health.error = 0, None, ""
                self._changed = True
        health.last_ok_at = self.clock()
        return True

    def backoff(self, name: str) -> float:
        """Seconds until the loop's next pass: its interval, doubled per failed pass up to 8 intervals."""
        health = self.health[name]
        factor = 1 if health.failures == 0 else min(2 ** (health.failures - 1), MAX_BACKOFF_FACTOR)
        return health.interval * factor

    def report(self, *, force: bool = False) -> None:
        """Write the loops' health to the store when it changed, or as a heartbeat."""
        now = self.clock()
        with self._lock:
            due = force or self._changed or self._reported is None or \
                (now - self._reported).total_seconds() >= HEARTBEAT_SECONDS
            if not due:
                return
            rows = [h.row() for h in self.health.values()]
            self._changed = False
        try:
            with self.store.tx() as conn:
                store_loops.report(conn, self.owner, rows, now)
            self._reported = now
        except StoreError as error:  # the store is down: the loops say so themselves; report later
            self._changed = True
            log.warning("could not report loop health: %s", error)

    def _failed(self, health: Health, error: Exception) -> None:
        text = f"{type(error).__name__}: {error}"[:2000]
        with self._lock:
            repeated = health.failures > 0 and health.error == text
            health.failures += 1
            health.failing_since = health.failing_since or self.clock()
            health.error = text
            self._changed = True
        if repeated:
            log.error("%s loop: pass failed again (%d in a row): %s", health.name, health.failures, text)
        else:
            log.error("%s loop: a pass failed; the next pass runs after a back-off", health.name, exc_info=error)
        callback = self.on_failure.get(health.name)
        if callback is not None:
            try:
                callback(error)
            except Exception:
                log.warning("%s loop: could not record the failure", health.name, exc_info=True)
