"""Rollups: each finished execution folded into hourly and daily buckets, in its own transaction.

The lifecycle calls a :class:`Rollup` for every move of an execution; a final move (succeeded,
failed, terminated) becomes an :class:`Outcome`, a plain value, and :func:`fold` adds outcomes
into ``metric_buckets`` (counts, durations with active time apart from waiting time, the fixed
duration histogram), ``metric_failures`` (by failure class) and ``metric_actions`` (per step of
the definition, hourly only: they are read for one workflow at a time, where 720 hours are cheap,
and every row less is time less in each finished execution's transaction). Admission's drops, refusals and filtered triggers are counted in the same buckets
(:func:`count_decision`). Because the fold runs in the transaction that commits the move, an
execution is counted exactly once, also when its worker dies before or after.

Buckets are keyed by workflow, version, span (``h`` for a UTC hour, ``d`` for a UTC day) and the
span's start. Window queries (:mod:`controller.metrics.windows`) read buckets only, so pruning old
executions changes no figure.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Insert, Table, case, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from controller.model.statuses import Decision, ExecutionStatus, StepStatus
from controller.store.db import gather
from controller.store.direct import executemany
from controller.store.tables import (
    DURATION_BOUNDS,
    HISTOGRAM,
    metric_actions,
    metric_buckets,
    metric_failures,
)

if TYPE_CHECKING:
    from controller.engine.lifecycle import Transition
    from controller.engine.queue import ExecutionRow

HOUR, DAY = "h", "d"
SPANS: Mapping[str, timedelta] = {HOUR: timedelta(hours=1), DAY: timedelta(days=1)}
HOURLY_RETENTION = timedelta(days=7)  # the 24h window and its previous window need two days of hours
KEY = ("workflow_id", "span", "start", "version")
_COUNTED = {Decision.DROPPED: "dropped", Decision.REFUSED: "refused", Decision.FILTERED: "filtered"}


@dataclass(frozen=True)
class StepOutcome:
    action_id: str
    type: str
    failed: bool
    seconds: float


@dataclass(frozen=True)
class Outcome:
    """What one finished execution adds to the metrics."""

    workflow_id: int
    account: str
    version: int  # 0: it never started (terminated while queued)
    status: str  # succeeded | failed | terminated
    finished_at: datetime
    duration: float  # started -> finished, seconds (0 when it never started)
    waited: float  # of which waiting
    failure: str | None = None
    steps: tuple[StepOutcome, ...] = ()

    @property
    def active(self) -> float:
        return max(0.0, self.duration - self.waited)


def outcome_of(ex: ExecutionRow) -> Outcome:
    """The outcome of an execution that has just reached a final state."""
    assert ex.finished_at is not None
    duration = (ex.finished_at - ex.started_at).total_seconds() if ex.started_at else 0.0
    steps = tuple(StepOutcome(s.action_id, s.type, s.status == StepStatus.FAILED,
                              max(0.0, (s.finished_at - s.started_at).total_seconds()))
                  for s in ex.steps.values()
                  if s.finished_at is not None and s.status in (StepStatus.SUCCEEDED, StepStatus.FAILED))
    return Outcome(ex.workflow_id, ex.workflow_key.split("/", 1)[0], ex.version or 0, ex.status, ex.finished_at,
                   max(0.0, duration), min(ex.waited_seconds, max(0.0, duration)), ex.failure, steps)


Observer = Callable[[Connection, str, Outcome], None]
"""Given ``(conn, workflow key, outcome)`` of each finished execution, in the transaction of its move."""


class Rollup:
    """Lifecycle hook: fold a finished execution into the buckets, in the transaction of its move (with
    the others that transaction finishes: a worker's batch is one fold). Its ``observers`` (the Prometheus
    counters, :func:`controller.metrics.prom.instrument`) get the same outcome: worked out once."""

    def __init__(self) -> None:
        self.observers: list[Observer] = []

    def __call__(self, conn: Connection, ex: ExecutionRow, move: Transition) -> None:
        if move.final:
            outcome = outcome_of(ex)
            gather(conn, fold, outcome)
            for observe in self.observers:
                observe(conn, ex.workflow_key, outcome)


def starts(at: datetime) -> list[tuple[str, datetime]]:
    """The (span, start) of the hour and of the day ``at`` falls in (UTC)."""
    at = at.astimezone(UTC)
    hour = at.replace(minute=0, second=0, microsecond=0)
    return [(HOUR, hour), (DAY, hour.replace(hour=0))]


def histogram_index(seconds: float) -> int:
    """The histogram bucket of a duration: the first bound it does not exceed, or +Inf."""
    return bisect.bisect_left(DURATION_BOUNDS, seconds)


def fold(conn: Connection, outcomes: Iterable[Outcome]) -> None:
    """Add ``outcomes`` to the buckets: three statements, however many outcomes (summed here first)."""
    buckets: dict[tuple[Any, ...], dict[str, Any]] = {}
    failures: dict[tuple[Any, ...], dict[str, Any]] = {}
    actions: dict[tuple[Any, ...], dict[str, Any]] = {}
    for o in outcomes:
        for span, start in starts(o.finished_at):
            key = (o.workflow_id, span, start, o.version)
            row = buckets.get(key) or buckets.setdefault(key, _empty_bucket(key, o.account))
            row["executions"] += 1
            row[o.status] += 1
            row["duration_sum"] += o.duration
            row["duration_max"] = max(row["duration_max"], o.duration)
            row["active_sum"] += o.active
            row["active_max"] = max(row["active_max"], o.active)
            row["wait_sum"] += o.waited
            row[HISTOGRAM[histogram_index(o.active)]] += 1
            if o.status != ExecutionStatus.SUCCEEDED:
                f_key = (*key, o.failure or "internal")
                failures.setdefault(f_key, {**_key_row(key, o.account), "failure": f_key[-1], "count": 0})["count"] += 1
            for step in o.steps if span == HOUR else ():  # per action, hours only (read per workflow)
                a_key = (*key, step.action_id)
                a_row = actions.get(a_key) or actions.setdefault(a_key, {
                    **_key_row(key, o.account), "action_id": step.action_id, "type": step.type, "count": 0,
                    "failures": 0, "duration_sum": 0.0, "duration_max": 0.0})
                a_row["count"] += 1
                a_row["failures"] += int(step.failed)
                a_row["duration_sum"] += step.seconds
                a_row["duration_max"] = max(a_row["duration_max"], step.seconds)
    _upsert(conn, metric_buckets, buckets, sums=("executions", "succeeded", "failed", "terminated", "duration_sum",
                                                 "active_sum", "wait_sum", *HISTOGRAM),
            maxes=("duration_max", "active_max"))
    _upsert(conn, metric_failures, failures, sums=("count",), maxes=())
    _upsert(conn, metric_actions, actions, sums=("count", "failures", "duration_sum"), maxes=("duration_max",))


def count_decision(conn: Connection, *, workflow_id: int, account: str, version: int | None, decision: str,
                   at: datetime) -> None:
    """Count a trigger admission did not start (dropped, refused, filtered) in its bucket."""
    column = _COUNTED.get(Decision(decision))
    if column is None:
        return
    rows = {}
    for span, start in starts(at):
        key = (workflow_id, span, start, version or 0)
        rows[key] = {**_empty_bucket(key, account), column: 1}
    _upsert(conn, metric_buckets, rows, sums=(column,), maxes=())


def prune(conn: Connection, now: datetime, retention: timedelta) -> int:
    """Forget daily buckets and per-action buckets older than ``retention``, other hourly buckets
    older than :data:`HOURLY_RETENTION`."""
    removed = 0
    for table in (metric_buckets, metric_failures, metric_actions):
        for span, keep in ((HOUR, retention if table is metric_actions else HOURLY_RETENTION), (DAY, retention)):
            c = table.c
            removed += int(conn.execute(delete(table).where(c.span == span, c.start < now - keep)).rowcount or 0)
    return removed


def _key_row(key: tuple[Any, ...], account: str) -> dict[str, Any]:
    return {**dict(zip(KEY, key)), "account": account}


def _empty_bucket(key: tuple[Any, ...], account: str) -> dict[str, Any]:
    row: dict[str, Any] = _key_row(key, account)
    row.update({name: 0 for name in ("executions", "succeeded", "failed", "terminated", "dropped", "refused",
                                     "filtered", *HISTOGRAM)})
    row.update({name: 0.0 for name in ("duration_sum", "duration_max", "active_sum", "active_max", "wait_sum")})
    return row


def _upsert(conn: Connection, table: Table, rows: Mapping[tuple[Any, ...], dict[str, Any]], *, sums: Sequence[str],
            maxes: Sequence[str]) -> None:
    """Insert the rows, or add them to the rows already there (sums added, maxima kept).

    Rows go in key order, so that two transactions adding to the same buckets on PostgreSQL lock
    them in the same order and never deadlock. Through the driver's cursor (:mod:`controller.store.direct`):
    what SQLAlchemy adds per call cost more than the upsert itself in every finished execution.
    """
    if rows:
        executemany(conn, _upsert_statement(conn.dialect, table.name, tuple(sums), tuple(maxes)),
                    [rows[key] for key in sorted(rows)])


@functools.lru_cache(maxsize=64)
def _upsert_statement(dialect: Dialect, table_name: str, sums: tuple[str, ...], maxes: tuple[str, ...]) -> Insert:
    """The upsert of one shape, built once (building it costs ~0.3 ms, many times what running it does)."""
    table = {t.name: t for t in (metric_buckets, metric_failures, metric_actions)}[table_name]
    insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    new = stmt.excluded
    values: dict[str, Any] = {name: table.c[name] + new[name] for name in sums}
    values.update({name: case((new[name] > table.c[name], new[name]), else_=table.c[name]) for name in maxes})
    conflict = [c.name for c in table.primary_key.columns]  # (the bucket's account is its workflow's)
    return stmt.on_conflict_do_update(index_elements=conflict, set_=values)
