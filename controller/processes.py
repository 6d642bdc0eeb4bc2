"""The worker processes of `wfctl serve`: execution beside intake without sharing its GIL.

``wfctl serve --worker-processes N`` keeps the HTTP service and the leader's loops in the serve
process and runs the workers (``--workers`` threads each) in N child processes on the same
store. They claim executions under leases like any worker, so nothing changes for durability: a
child that dies loses at most what a killed worker thread would. The serve process supervises
them: a child that exits is started again after a back-off; SIGTERM stops them with their grace
period. A child dies with its parent (``PR_SET_PDEATHSIG``), so a kill -9 of serve stops all of it,
as a crash of the machine would.

Their counters reach ``/metrics`` through prometheus-client's multiprocess mode: when
``PROMETHEUS_MULTIPROC_DIR`` is not set, serve sets it to ``<data-dir>/prometheus`` before any
counter exists.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.datadir import PRIVATE_DIR, private_umask

if TYPE_CHECKING:
    from controller.service import ServeOptions
    from controller.settings import Settings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prom.MULTIPROC_ENV; importing prom would import prometheus_client
_PR_SET_PDEATHSIG = 1
HTTP_THREADS = 16  # the webhook threads of serve: more of them make bigger groups of one commit
# Every SQLite call gives up the GIL; with Python's default 5 ms another thread's turn comes first, and the
# thread that holds the store's write lock waits for the GIL while everyone else waits for the lock. Longer
# turns let it finish its transaction: bench_e2e went from ~280 to ~330 requests/s (16 threads, 5 -> 20 ms).
SWITCH_INTERVAL = 0.02


def tune() -> None:
    """The process settings of serve and of its worker processes: the GIL turn (see SWITCH_INTERVAL), and
    private files (what they create lands in the data directory: counters, outboxes, clones)."""
    sys.setswitchinterval(float(os.environ.get("WFC_SWITCH_INTERVAL", SWITCH_INTERVAL)))
    private_umask()


def default_count() -> int:
    """One worker process per core beyond the first (that one serves HTTP and leads); none on one core."""
    from controller.reconcile.pool import cores

    return max(0, min(cores() - 1, 8))


def share_counters(data_dir: Path, environ: Any = os.environ) -> None:
    """Put this process's and its children's Prometheus counters in files under the data directory,
    unless the operator chose a folder (call before :mod:`prometheus_client` is imported)."""
    if environ.get(MULTIPROC_ENV):
        return
    if "prometheus_client" in sys.modules:  # too late to switch (serve called inside another program)
        log.warning("the counters of the worker processes will not reach /metrics: prometheus_client was "
                    "imported before serve could set %s; set it yourself", MULTIPROC_ENV)
        return
    folder = data_dir / "prometheus"
    shutil.rmtree(folder, ignore_errors=True)  # counters of an earlier run of serve start again from 0
    folder.mkdir(parents=True, mode=PRIVATE_DIR)
    environ[MULTIPROC_ENV] = str(folder)


@dataclass
class WorkerProcesses:
    """Starts, watches and stops the children; ``count`` of them, each with ``options.workers`` threads."""

    settings: Settings
    options: ServeOptions
    lease: float
    count: int
    backoff: float = 1.0
    _children: list[Any] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _watch: threading.Thread | None = None

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
        self._children = [self._spawn(context, n) for n in range(self.count)]
        self._watch = threading.Thread(target=self._supervise, args=(context,), name="worker-processes", daemon=True)
        self._watch.start()

    def _spawn(self, context: Any, n: int) -> Any:
        child = context.Process(target=run_child, args=(self.settings, self.options, self.lease, os.getpid(),
                                                          logging.getLogger().level),
                                name=f"wfctl-worker-{n}", daemon=False)
        child.start()
        log.info("worker process %d started (pid %s, %d thread(s))", n, child.pid, self.options.workers)
        return child

    def _supervise(self, context: Any) -> None:
        while not self._stop.wait(0.5):
            for n, child in enumerate(self._children):
                if not child.is_alive() and not self._stop.is_set():
                    log.error("worker process %d (pid %s) exited with %s; starting it again in %gs", n, child.pid,
                              child.exitcode, self.backoff)
                    if self._stop.wait(self.backoff):
                        return
                    self._children[n] = self._spawn(context, n)

    def alive(self) -> int:
        return sum(1 for child in self._children if child.is_alive())

    def stop(self, timeout: float = 9.0) -> None:
        """SIGTERM to each child: in-flight steps finish and leases are released; SIGKILL past ``timeout``."""
        self._stop.set()
        if self._watch is not None:
            self._watch.join(2)
        for child in self._children:
            if child.is_alive():
                os.kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self._children:
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                log.warning("worker process pid %s did not stop in %gs; killing it", child.pid, timeout)
                child.kill()
                child.join(2)


def run_child(settings: Settings, options: ServeOptions, lease: float, parent: int, log_level: int) -> None:
    """A worker process: the workers of :class:`controller.service.Controller`, nothing else, until SIGTERM."""
    _die_with_parent(parent)
    tune()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; serve decides
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
    from controller.metrics import prom
    from controller.service import Controller

    store = settings.open_store(upgrade=False)
    engine = settings.engine(store, lease_seconds=lease, config=settings.config())
    prom.instrument(engine)
    controller = Controller(None, engine, options)
    controller.start()
    while not stopping.wait(0.5):
        if os.getppid() != parent:  # (where PR_SET_PDEATHSIG is not available)
            break
    controller.stop()
    store.close()


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the getppid() check above stops the child instead
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)
