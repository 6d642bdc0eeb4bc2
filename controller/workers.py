"""The worker threads of one process: each claims a batch of runnable executions, runs it, and claims again.

`wfctl serve` runs them in its own process (``--worker-processes 0``, :class:`controller.service.Controller`)
or in each worker process (:mod:`controller.processes`), which imports this module and the engine, not the
reconciler, the scheduler or the web layer. Every pass is supervised (:mod:`controller.supervision`): one
that raises is logged and backed off, never the end of its thread.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.engine.runtime import Engine
    from controller.supervision import Supervisor

# A worker claims up to this many at once: under load the write lock is the scarce thing, and a batch of
# pure executions takes it twice (claim, results) however many it holds. Slow ones give the rest back
# after CLAIM_BUDGET seconds, so a batch never keeps work from idle workers for long.
CLAIM_BATCH = 25
CLAIM_BUDGET = 1.0


class Workers:
    """``count`` threads named ``worker-<i>``, each a supervised loop, until ``stop`` is set."""

    def __init__(self, engine: Engine, supervisor: Supervisor, count: int, idle_poll: float,
                 stop: threading.Event) -> None:
        self.engine = engine
        self.supervisor = supervisor
        self.idle_poll = idle_poll
        self.stop = stop
        self.names = [f"worker-{i}" for i in range(count)]
        for name in self.names:
            supervisor.loop(name, idle_poll)

    def threads(self) -> list[threading.Thread]:
        """The worker threads, not started yet."""
        return [threading.Thread(target=self._work, args=(name,), name=name, daemon=True) for name in self.names]

    def _work(self, name: str) -> None:
        ran = 0

        def claim_and_run() -> None:
            nonlocal ran
            ran = self.engine.run_pending(limit=CLAIM_BATCH, stop=self.stop.is_set, budget=CLAIM_BUDGET)

        while not self.stop.is_set():
            ran = 0
            if not self.supervisor.run_pass(name, claim_and_run):
                self.stop.wait(self.supervisor.backoff(name))
            elif not ran:
                self.stop.wait(self.idle_poll)
