"""Loading many workflow files over every core: what a cold sync and `wfctl validate` of a big tree use.

Parsing (ruamel's C loader) and validating (pydantic) are CPU-bound and hold the GIL, so threads
would not help: :func:`load_all` hands chunks of ``(path, bytes)`` to a pool of processes and
returns the :class:`~controller.reconcile.loader.Loaded` results in the order it was given them,
the same values :func:`~controller.reconcile.loader.load` gives in-process. The items may come as
they are read (a generator): each chunk goes to a worker as soon as it is full, so the workers
parse while the caller still reads files or blobs. Below
:data:`PARALLEL_FROM` files, or on one core, it loads in-process: starting workers costs more than
a few hundred files (a one-file sync never pays for a pool).

The pool forks when this process runs a single thread (the CLI: the children start in
milliseconds, with every module imported) and spawns otherwise (`wfctl serve`: forking a process
that runs threads can copy a held lock). Either way the children run :func:`load` only and touch
neither git nor the store.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor

from controller.reconcile.loader import Loaded, WorkflowPath, bulk_loading, load, without_model

PARALLEL_FROM = 400  # files; fewer load in-process
CHUNK = 200  # files per task: large enough that pickling the answers stays a small part of the work


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_all(items: Iterable[tuple[WorkflowPath, bytes]], expected: int | None = None, *,
             models: bool = True) -> list[Loaded]:
    """:func:`load` of every ``(where, data)``, in order; over a process pool when there are many.

    ``expected`` is how many items an iterable without a length is likely to give: it only chooses
    between the pool and in-process (both answer the same). Without ``models`` each answer comes
    :func:`~controller.reconcile.loader.without_model` (a cold sync that judges no references).
    """
    count = len(items) if expected is None else expected  # type: ignore[arg-type]
    processes = min(cores(), -(-count // CHUNK))
    # The parent too: it unpickles thousands of answers, and with the default thresholds the
    # collector rescans them again and again (three quarters of the unpickling).
    with bulk_loading():
        if count < PARALLEL_FROM or processes < 2:
            return [_load(where, data, models) for where, data in items]
        method = "fork" if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context(method)) as pool:
            parts = [pool.submit(_load_chunk, chunk, models) for chunk in _chunks(items)]
            return [loaded for part in parts for loaded in part.result()]


def _chunks(items: Iterable[tuple[WorkflowPath, bytes]]) -> Iterable[list[tuple[WorkflowPath, bytes]]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, CHUNK)):
        yield chunk


def _load_chunk(items: Iterable[tuple[WorkflowPath, bytes]], models: bool) -> list[Loaded]:
    with bulk_loading():
        return [_load(where, data, models) for where, data in items]


def _load(where: WorkflowPath, data: bytes, models: bool) -> Loaded:
    loaded = load(where, data)
    return loaded if models else without_model(loaded)
