"""Prometheus: what this process did (counters and histograms) and what the store holds (gauges).

Counters count where things happen, like every Prometheus client: an execution finished by this
process's workers (``wfctl_executions_total``, ``wfctl_execution_duration_seconds`` of active time,
``wfctl_step_duration_seconds``), a trigger this process dropped, a webhook request it answered, a
reconcile pass it ran. They move only once the transaction that made the event has committed.
Under gunicorn, set ``PROMETHEUS_MULTIPROC_DIR`` and every worker's counts are summed
(prometheus-client's multiprocess mode). Gauges (queue depth, executions in flight, the applied
commit, conditions, loop health) are read from the store at scrape time, so every process reports
the same value: aggregate them with ``max``, not ``sum``.

Labels are bounded: account and workflow names come from git, action types and statuses from
closed sets; nothing comes from a payload.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Connection, func, select

from controller.errors import AuthError, StoreError
from controller.metrics import rollup
from controller.model.statuses import ACTIVE, IN_FLIGHT, Decision, ExecutionStatus, ordered
from controller.store.db import after_commit
from controller.store.loops import recent
from controller.store.tables import DURATION_BOUNDS, executions, sources, workflows

if TYPE_CHECKING:
    from controller.store import Store

log = logging.getLogger(__name__)

TOKEN_ENV = "WFC_METRICS_TOKEN"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

PROCESS = CollectorRegistry()
"""This process's counters; in multiprocess mode their values live in files and are read from there."""

EXECUTIONS = Counter("wfctl_executions", "Executions that reached a final state in this process",
                     ["account", "workflow", "status"], registry=PROCESS)
EXECUTION_DURATION = Histogram("wfctl_execution_duration_seconds",
                               "Active time (running, without durable waits and back-offs) of finished executions",
                               ["account", "workflow"], buckets=DURATION_BOUNDS, registry=PROCESS)
STEP_DURATION = Histogram("wfctl_step_duration_seconds", "Duration of finished steps, by action type",
                          ["action_type"], buckets=DURATION_BOUNDS, registry=PROCESS)
WEBHOOK_REQUESTS = Counter("wfctl_webhook_requests", "Webhook trigger requests answered, by HTTP status",
                           ["code"], registry=PROCESS)
DROPS = Counter("wfctl_trigger_drops", "Triggers dropped because the workflow was over its rate limit",
                ["account", "workflow", "trigger"], registry=PROCESS)
RECONCILE_PASSES = Counter("wfctl_reconcile_passes", "Reconcile passes run, by result (applied, unchanged, refused, failed)",
                           ["result"], registry=PROCESS)
RECONCILE_DURATION = Histogram("wfctl_reconcile_duration_seconds", "Duration of reconcile passes",
                               buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
                               registry=PROCESS)

ALERTS = Counter("wfctl_alerts", "Alert notifications this process emitted (drops, failures, suspended)",
                 ["account", "workflow", "kind"], registry=PROCESS)

GAUGES = ("wfctl_queue_depth", "wfctl_executions_in_flight", "wfctl_source_info", "wfctl_source_condition",
          "wfctl_workflows", "wfctl_loop_last_ok_timestamp_seconds", "wfctl_store_up")
"""The families read from the store at scrape time."""


class Instrumentable(Protocol):
    """What :func:`instrument` needs of an engine (the engine is not imported here)."""

    rollup: rollup.Rollup
    admission: Any


def instrument(engine: Instrumentable) -> None:
    """Count the executions this engine finishes and the triggers it drops (once per engine)."""
    if getattr(engine, "_prometheus", False):
        return
    engine._prometheus = True  # type: ignore[attr-defined]
    engine.rollup.observers.append(_on_outcome)
    engine.admission.observers.append(_on_decision)


def _on_outcome(conn: Connection, key: str, outcome: rollup.Outcome) -> None:
    account, _, name = key.partition("/")
    after_commit(conn, lambda: _finished(account, name, outcome))


def _finished(account: str, name: str, outcome: rollup.Outcome) -> None:
    EXECUTIONS.labels(account, name, outcome.status).inc()
    EXECUTION_DURATION.labels(account, name).observe(outcome.active)
    for step in outcome.steps:
        STEP_DURATION.labels(step.type).observe(step.seconds)


def _on_decision(conn: Connection, target: Any, request: Any, verdict: Any) -> None:
    if verdict.decision == Decision.DROPPED:
        account, _, name = target.key.partition("/")
        after_commit(conn, lambda: DROPS.labels(account, name, request.kind).inc())


def webhook_answered(code: int) -> None:
    WEBHOOK_REQUESTS.labels(str(code)).inc()


def reconcile_pass(result: str, seconds: float) -> None:
    RECONCILE_PASSES.labels(result).inc()
    RECONCILE_DURATION.observe(seconds)


def check_token(authorization: str | None, environ: Any = None) -> None:
    """AuthError unless ``WFC_METRICS_TOKEN`` is unset or the header carries it as a bearer token."""
    expected = (os.environ if environ is None else environ).get(TOKEN_ENV)
    if not expected:
        return
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), expected.encode()):
        raise AuthError(f"/metrics needs Authorization: Bearer <the token in {TOKEN_ENV}>")


def exposition(store: Store, now: datetime, environ: Any = None) -> bytes:
    """The text exposition of this process's (or, in multiprocess mode, all workers') counters and
    the store's gauges."""
    env = os.environ if environ is None else environ
    registry = CollectorRegistry()
    if env.get(MULTIPROC_ENV):
        MultiProcessCollector(registry, path=env[MULTIPROC_ENV])
    else:
        registry.register(_Process())
    registry.register(StoreGauges(store, now))
    return generate_latest(registry)


class _Process:
    def collect(self) -> Iterator[Metric]:
        yield from PROCESS.collect()


class StoreGauges:
    """Gauges read from the store at scrape time; ``wfctl_store_up 0`` when it does not answer."""

    def __init__(self, store: Store, now: datetime):
        self.store = store
        self.now = now

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("wfctl_store_up", "1 when the store answered this scrape")
        try:
            with self.store.read() as conn:
                families = list(self._read(conn))
        except StoreError as e:
            log.warning("metrics: %s", e)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, conn: Connection) -> Iterator[Metric]:
        e, w = executions.c, workflows.c
        held_back = e.workflow_id.in_(select(w.id).where(w.sync == "Blocked")).label("held")
        counts: dict[tuple[str, bool], int] = {
            (status, bool(held)): n for status, held, n in conn.execute(
                select(e.status, held_back, func.count()).where(e.status.in_(ordered(ACTIVE)))
                .group_by(e.status, held_back))}
        queued = counts.get((ExecutionStatus.QUEUED, False), 0)
        held = counts.get((ExecutionStatus.QUEUED, True), 0)
        depth = GaugeMetricFamily("wfctl_queue_depth", "Queued executions the workers may claim (not held)")
        depth.add_metric([], queued)
        yield depth
        flight = GaugeMetricFamily("wfctl_executions_in_flight", "Executions running, waiting, or queued but held "
                                   "by a restore", labels=["state"])
        in_flight = {status: sum(n for (s, _), n in counts.items() if s == status) for status in IN_FLIGHT}
        for state, value in (("running", in_flight[ExecutionStatus.RUNNING]),
                             ("waiting", in_flight[ExecutionStatus.WAITING]), ("held", held)):
            flight.add_metric([state], value)
        yield flight
        info = GaugeMetricFamily("wfctl_source_info", "The commit each source last applied", labels=["source", "commit"])
        condition = GaugeMetricFamily("wfctl_source_condition", "A source's conditions (1 for the status it has)",
                                      labels=["source", "type", "status"])
        for name, commit, conditions in conn.execute(select(sources.c.name, sources.c.last_applied_commit,
                                                            sources.c.conditions)):
            info.add_metric([name, commit or ""], 1)
            for c in conditions or []:
                for status in ("True", "False", "Unknown"):
                    condition.add_metric([name, c["type"], status], 1 if c["status"] == status else 0)
        yield info
        yield condition
        synced = GaugeMetricFamily("wfctl_workflows", "Workflows by account and sync state (Synced, Invalid, Blocked)",
                                   labels=["account", "sync"])
        for account, sync, n in conn.execute(select(w.account, w.sync, func.count()).where(w.deleted.is_(False))
                                             .group_by(w.account, w.sync).order_by(w.account, w.sync)):
            synced.add_metric([account, sync], n)
        yield synced
        loops = GaugeMetricFamily("wfctl_loop_last_ok_timestamp_seconds",
                                  "When each background loop last passed, over every serving process",
                                  labels=["loop"])
        last: dict[str, float] = {}
        for loop in recent(conn, self.now):
            if loop["last_ok_at"]:
                at = datetime.fromisoformat(loop["last_ok_at"]).timestamp()
                name = loop["name"] if not loop["name"].startswith("worker-") else "worker"
                last[name] = max(last.get(name, 0.0), at)
        for name, at in sorted(last.items()):
            loops.add_metric([name], at)
        yield loops
