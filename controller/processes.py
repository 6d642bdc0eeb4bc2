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

A child is a plain ``python -c`` process (``wfctl-worker-<n>`` in its command line) told what to run by
a pickle on its stdin, not a multiprocessing one: multiprocessing's spawn starts a resource tracker
process as well (13 MB for nothing: the workers share no semaphore), and a child imports only the
engine and :mod:`controller.workers` (not the reconciler, git, the scheduler or the web layer).
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import shutil
import signal
import subprocess
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

# What a child runs: the parent's sys.path first (as multiprocessing's spawn would), then its orders.
CHILD = ("import pickle, sys; sys.path[:] = pickle.load(sys.stdin.buffer); "
         "from controller.processes import child_main; child_main()")
MARK = "wfctl-worker"  # in a child's command line, for ps and for serve's tests

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prom.MULTIPROC_ENV; importing prom would import prometheus_client
_PR_SET_PDEATHSIG = 1
_M_ARENA_MAX = -8  # glibc's mallopt() parameter
MALLOC_ARENAS = 2
HTTP_THREADS = 16  # the webhook threads of serve: more of them make bigger groups of one commit
# Every SQLite call gives up the GIL; with Python's default 5 ms another thread's turn comes first, and the
# thread that holds the store's write lock waits for the GIL while everyone else waits for the lock. Longer
# turns let it finish its transaction: bench_e2e went from ~280 to ~330 requests/s (16 threads, 5 -> 20 ms).
SWITCH_INTERVAL = 0.02


def tune() -> None:
    """The process settings of serve and of its worker processes: the GIL turn (see SWITCH_INTERVAL), malloc's
    arenas (see MALLOC_ARENAS), and private files (what they create lands in the data directory: counters,
    outboxes, clones). Called before the process starts its threads."""
    sys.setswitchinterval(float(os.environ.get("WFC_SWITCH_INTERVAL", SWITCH_INTERVAL)))
    _limit_arenas()
    private_umask()


def _limit_arenas() -> None:
    # glibc gives each thread that allocates while another does its own arena, up to 8 per core, and keeps
    # what it once held: with 16 HTTP threads and the workers that is memory held for nothing (the GIL lets one
    # thread run Python at a time). Two arenas: e2e peak RSS 164 -> 155 MB, throughput within noise (3 pairs).
    if "MALLOC_ARENA_MAX" in os.environ:  # the operator's own choice, which glibc applied at start
        return
    try:
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):  # not glibc: its allocator has its own ways
        pass


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


@dataclass(frozen=True)
class Orders:
    """What a worker process is told on its stdin."""

    settings: Settings
    number: int
    workers: int  # threads
    idle_poll: float
    lease: float
    parent: int  # serve's pid: the child dies with it
    log_level: int


@dataclass
class WorkerProcesses:
    """Starts, watches and stops the children; ``count`` of them, each with ``options.workers`` threads."""

    settings: Settings
    options: ServeOptions
    lease: float
    count: int
    backoff: float = 1.0
    _children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _watch: threading.Thread | None = None

    def start(self) -> None:
        self._children = [self._spawn(n) for n in range(self.count)]
        self._watch = threading.Thread(target=self._supervise, name="worker-processes", daemon=True)
        self._watch.start()

    def _spawn(self, n: int) -> subprocess.Popen[bytes]:
        orders = Orders(self.settings, n, self.options.workers, self.options.idle_poll, self.lease, os.getpid(),
                        logging.getLogger().level)
        child = subprocess.Popen([sys.executable, "-c", CHILD, f"{MARK}-{n}"], stdin=subprocess.PIPE)
        assert child.stdin is not None  # (stdin=PIPE)
        try:
            with child.stdin:
                child.stdin.write(pickle.dumps(sys.path) + pickle.dumps(orders))
        except OSError as e:  # it died at once: the supervisor sees it exit and starts it again
            log.error("worker process %d (pid %s) did not take its orders: %s", n, child.pid, e)
        log.info("worker process %d started (pid %s, %d thread(s))", n, child.pid, self.options.workers)
        return child

    def _supervise(self) -> None:
        while not self._stop.wait(0.5):
            for n, child in enumerate(self._children):
                if child.poll() is not None and not self._stop.is_set():
                    log.error("worker process %d (pid %s) exited with %s; starting it again in %gs", n, child.pid,
                              child.returncode, self.backoff)
                    if self._stop.wait(self.backoff):
                        return
                    self._children[n] = self._spawn(n)

    def alive(self) -> int:
        return sum(1 for child in self._children if child.poll() is None)

    def stop(self, timeout: float = 9.0) -> None:
        """SIGTERM to each child: in-flight steps finish and leases are released; SIGKILL past ``timeout``."""
        self._stop.set()
        if self._watch is not None:
            self._watch.join(2)
        for child in self._children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + timeout
        for child in self._children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker process pid %s did not stop in %gs; killing it", child.pid, timeout)
                child.kill()
                child.wait(2)


def child_main() -> None:
    """The entry of a worker process (:data:`CHILD`): its orders from stdin, then :func:`run_child`."""
    run_child(pickle.load(sys.stdin.buffer))


def run_child(orders: Orders) -> None:
    """A worker process: the worker threads (:class:`controller.workers.Workers`), nothing else, until SIGTERM."""
    _die_with_parent(orders.parent)
    tune()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; serve decides
    logging.basicConfig(level=orders.log_level,
                        format=f"%(asctime)s %(levelname)s {MARK}-{orders.number} %(name)s: %(message)s")
    from controller.metrics import prom
    from controller.supervision import Supervisor
    from controller.workers import Workers

    settings = orders.settings
    store = settings.open_store(upgrade=False)
    engine = settings.engine(store, lease_seconds=orders.lease, config=settings.config())
    prom.instrument(engine)
    threads = Workers(engine, Supervisor(store, engine.owner), orders.workers, orders.idle_poll, stopping).threads()
    for thread in threads:
        thread.start()
    while not stopping.wait(0.5):
        if os.getppid() != orders.parent:  # (where PR_SET_PDEATHSIG is not available)
            stopping.set()
    for thread in threads:  # their steps finish, their executions are released
        thread.join(9.0)
    store.close()


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the getppid() check above stops the child instead
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)
