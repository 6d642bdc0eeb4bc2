"""Alerts, grouped like Alertmanager groups them: one open alert per (workflow, kind), a cooldown
between notifications, and deliveries to the account's sinks that never hold up the engine.

Where it sits: admission tells :class:`DropAlerts` of every decision (rate-limit drops), the
lifecycle runs :class:`FailureAlerts` on every move (failed executions), and suspensions
(:mod:`controller.safeguards.suspension`) raise ``suspended`` alerts. Each runs in the transaction
of the event it is about, so an alert is counted exactly when its event commits.

An alert opens when its rule holds (``threshold`` events within ``window``; a suspension at once),
counts every event while open, and resolves once quiet for the window. A notification goes out when
the alert opens and then at most once per ``cooldown`` for that (workflow, kind), saying how many
events came since the previous one, also across alerts that opened and resolved in between. A
notification is a row in ``alerts``, a log line, ``wfctl_alerts_total`` and one
``alert_deliveries`` row per sink, sent by the serve loop (:mod:`controller.safeguards.delivery`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select, text, update

from controller.config import AlertPolicy, AlertRule, Config
from controller.model.durations import describe_seconds
from controller.model.statuses import Decision, ExecutionStatus
from controller.store.db import after_commit
from controller.store.tables import alert_deliveries, alerts, as_utc, executions, trigger_decisions

if TYPE_CHECKING:
    from controller.engine.admission import Request, Target, Verdict
    from controller.engine.lifecycle import Transition
    from controller.engine.queue import ExecutionRow

log = logging.getLogger(__name__)

KINDS = ("drops", "failures", "suspended")
LOCK_NAMESPACE = 0x7766616C  # "wfal": pg_advisory_xact_lock(namespace, workflow id)
a = alerts.c


@dataclass(frozen=True)
class Subject:
    """What an alert is about."""

    workflow_id: int
    key: str  # account/name

    @property
    def account(self) -> str:
        return self.key.split("/", 1)[0]


def record(conn: Connection, policy: AlertPolicy, subject: Subject, kind: str, now: datetime, *,
           rule: AlertRule | None, window_count: Callable[[], int], details: Mapping[str, Any],
           describe: Callable[[dict[str, Any]], tuple[str, str]]) -> dict[str, Any] | None:
    """Count one event of ``kind`` for ``subject``; open, update or notify its alert as the rule says.

    ``rule`` None opens at once (suspensions) and never resolves by quiet. ``window_count`` gives the
    events within the rule's window, this one included (asked only when no alert is open).
    ``details`` are merged into the alert's (counters add up, other values replace).
    ``describe(alert)`` gives the notification's subject and text. Returns the alert row.
    """
    if conn.dialect.name == "postgresql":  # one open alert per (workflow, kind), also across replicas
        conn.execute(text("SELECT pg_advisory_xact_lock(:ns, :id)"), {"ns": LOCK_NAMESPACE, "id": subject.workflow_id})
    row = latest(conn, subject.workflow_id, kind)
    if row is not None and row["status"] == "open" and rule is not None and _quiet(row, rule, now):
        _resolve(conn, row, as_utc(row["last_at"]) + timedelta(seconds=rule.window))
        row = {**row, "status": "resolved"}
    if row is None or row["status"] != "open":
        opened = window_count() if rule is not None else 1
        if rule is not None and opened < rule.threshold:
            return None
        carried = int(row["pending"]) if row is not None else 0
        values = {"account": subject.account, "workflow_id": subject.workflow_id, "workflow_key": subject.key,
                  "kind": kind, "status": "open", "first_at": now, "last_at": now, "resolved_at": None,
                  "count": opened, "pending": carried + opened, "notifications": 0, "summary": "",
                  "notified_at": row["notified_at"] if row is not None else None,
                  "details": _merge({}, details, opened)}
        new_id = conn.execute(insert(alerts).returning(a.id), values).scalar_one()
        row = {**values, "id": new_id}
    else:
        row = {**row, "last_at": now, "count": row["count"] + 1, "pending": row["pending"] + 1,
               "details": _merge(row["details"], details, 1)}
    notified = row["notified_at"]
    due = notified is None or (now - as_utc(notified)).total_seconds() >= policy.cooldown
    if due:
        title, body = describe(row)
        row = {**row, "summary": title, "notified_at": now, "notifications": row["notifications"] + 1}
        _notify(conn, policy, row, title, body, now)
        row["pending"] = 0
    conn.execute(update(alerts).where(a.id == row["id"]).values(
        last_at=row["last_at"], count=row["count"], pending=row["pending"], details=row["details"],
        notified_at=row["notified_at"], notifications=row["notifications"],
        summary=row["summary"]))
    return row


def resolve(conn: Connection, workflow_id: int, kind: str, now: datetime) -> bool:
    """Resolve the open alert of ``kind`` for the workflow (a resumed suspension); False if none."""
    row = latest(conn, workflow_id, kind)
    if row is None or row["status"] != "open":
        return False
    _resolve(conn, row, now)
    return True


def resolve_quiet(conn: Connection, config: Config, now: datetime) -> int:
    """Resolve every open alert whose rule has been quiet for its window (the serve loop's pass)."""
    resolved = 0
    for found in conn.execute(select(alerts).where(a.status == "open", a.kind != "suspended")).mappings():
        row = dict(found)
        rule = _rule(config.alerts(row["account"]), row["kind"])
        if rule is not None and _quiet(row, rule, now):
            _resolve(conn, row, as_utc(row["last_at"]) + timedelta(seconds=rule.window))
            resolved += 1
    return resolved


def remind(conn: Connection, config: Config, now: datetime) -> int:
    """Notify again the open alerts that had no notification for the policy's ``repeat`` (a suspension
    nobody resumed); the serve loop's pass. Returns how many."""
    reminded = 0
    for found in conn.execute(select(alerts).where(a.status == "open", a.notified_at.is_not(None))).mappings():
        row = dict(found)
        policy = config.alerts(row["account"])
        if (now - as_utc(row["notified_at"])).total_seconds() < policy.repeat:
            continue
        title = f"still open since {as_utc(row['first_at']).isoformat()}: {row['summary']}"
        body = (f"{title}. {row['count']} event(s) so far; this notice repeats every {_span(policy.repeat)} while "
                f"the alert is open.")
        row = {**row, "notified_at": now, "notifications": row["notifications"] + 1, "pending": 0}
        _notify(conn, policy, row, title, body, now)
        conn.execute(update(alerts).where(a.id == row["id"]).values(notified_at=now, pending=0,
                                                                      notifications=row["notifications"]))
        reminded += 1
    return reminded


def latest(conn: Connection, workflow_id: int, kind: str) -> dict[str, Any] | None:
    found = conn.execute(select(alerts).where(a.workflow_id == workflow_id, a.kind == kind)
                         .order_by(a.id.desc()).limit(1)).mappings().first()
    return dict(found) if found is not None else None


def listing(conn: Connection, *, account: str | None = None, open_only: bool = False,
            limit: int = 200) -> list[dict[str, Any]]:
    """Alerts, newest first, as the API and `wfctl alerts` show them."""
    query = select(alerts).order_by(a.id.desc()).limit(limit)
    if account is not None:
        query = query.where(a.account == account)
    if open_only:
        query = query.where(a.status == "open")
    return [view(dict(row)) for row in conn.execute(query).mappings()]


def view(row: Mapping[str, Any]) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return as_utc(value).isoformat() if value is not None else None

    return {"id": row["id"], "account": row["account"], "workflow": row["workflow_key"], "kind": row["kind"],
            "status": row["status"], "summary": row["summary"], "count": row["count"],
            "first_at": iso(row["first_at"]), "last_at": iso(row["last_at"]), "resolved_at": iso(row["resolved_at"]),
            "notified_at": iso(row["notified_at"]), "notifications": row["notifications"],
            "details": row["details"]}


# -- the two rules that watch the engine --------------------------------------------------------


class DropAlerts:
    """Admission observer: rate-limit drops of a workflow accumulate into one alert per cooldown."""

    def __init__(self, config: Config, now: Callable[[], datetime]):
        self.config = config
        self.now = now

    def __call__(self, conn: Connection, target: Target, request: Request, verdict: Verdict) -> None:
        if verdict.decision != Decision.DROPPED:
            return
        policy = self.config.alerts(target.account)
        now = self.now()
        d = trigger_decisions.c

        def window_count() -> int:  # this drop's decision row is written after the observers: + 1
            since = now - timedelta(seconds=policy.drops.window)
            return 1 + int(conn.execute(select(func.count()).where(
                d.workflow_id == target.id, d.decision == Decision.DROPPED, d.at > since)).scalar_one())

        record(conn, policy, Subject(target.id, target.key), "drops", now, rule=policy.drops,
               window_count=window_count, details={"triggers": {request.kind: 1}, "reason": verdict.reason},
               describe=lambda alert: _drops_text(alert, policy))


class FailureAlerts:
    """Lifecycle hook: failed executions of a workflow in a burst make one alert per cooldown."""

    def __init__(self, config: Config, now: Callable[[], datetime]):
        self.config = config
        self.now = now

    def __call__(self, conn: Connection, ex: ExecutionRow, move: Transition) -> None:
        if move.after != ExecutionStatus.FAILED:
            return
        account = ex.workflow_key.split("/", 1)[0]
        policy = self.config.alerts(account)
        failed = next((s for s in ex.steps.values() if s.status == "failed"), None)
        e = executions.c

        def window_count() -> int:  # the execution is written before the hooks run: it counts itself
            since = move.at - timedelta(seconds=policy.failures.window)
            return int(conn.execute(select(func.count()).where(
                e.workflow_id == ex.workflow_id, e.status == ExecutionStatus.FAILED, e.finished_at > since))
                .scalar_one())

        details = {"action": failed.action_id if failed else None, "action_type": failed.type if failed else None,
                   "last_error": ex.error or "", "last_execution": ex.id, "classes": {ex.failure or "internal": 1}}
        record(conn, policy, Subject(ex.workflow_id, ex.workflow_key), "failures", move.at, rule=policy.failures,
               window_count=window_count, details=details, describe=lambda alert: _failures_text(alert, policy))


# -- helpers --------------------------------------------------------------------------------------


def _drops_text(alert: Mapping[str, Any], policy: AlertPolicy) -> tuple[str, str]:
    key, pending = alert["workflow_key"], alert["pending"]
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(alert["details"].get("triggers", {}).items()))
    since = "since the last alert" if alert["notified_at"] else f"within {_span(policy.drops.window)}"
    title = f"{key} dropped {pending} trigger(s) over its rate limit {since}"
    body = (f"{title} ({kinds}). {alert['details'].get('reason', '')} Further drops are counted; the next notice "
            f"comes after {_span(policy.cooldown)} if they go on.")
    return title, body


def _failures_text(alert: Mapping[str, Any], policy: AlertPolicy) -> tuple[str, str]:
    key, pending, details = alert["workflow_key"], alert["pending"], alert["details"]
    since = "since the last alert" if alert["notified_at"] else f"within {_span(policy.failures.window)}"
    action = f"step {details['action']} ({details['action_type']})" if details.get("action") else "its start"
    title = f"{key}: {pending} failed execution(s) {since}, failing at {action}"
    body = (f"{title}. Last error (execution {details.get('last_execution')}): {details.get('last_error')}. "
            f"The next notice comes after {_span(policy.cooldown)} if failures go on.")
    return title, body


def _notify(conn: Connection, policy: AlertPolicy, row: Mapping[str, Any], title: str, body: str,
            now: datetime) -> None:
    notify_also(conn, row, title, body, now, policy.sinks)
    account, _, name = row["workflow_key"].partition("/")

    def announce() -> None:
        log.warning("alert %s: %s", row["kind"], title)
        from controller.metrics import prom  # (imported where /metrics is served anyway)

        prom.ALERTS.labels(account, name, row["kind"]).inc()

    after_commit(conn, announce)


def notify_also(conn: Connection, row: Mapping[str, Any], title: str, body: str, now: datetime,
                sinks: Iterable[Mapping[str, Any]]) -> None:
    """Queue an alert's notice for ``sinks`` (the account's, or a workflow's author besides them)."""
    message = {"subject": title, "text": body, "alert": view(row)}
    rows = [{"alert_id": row["id"], "sink": dict(sink), "message": message, "attempts": 0, "next_at": now,
             "error": ""} for sink in sinks]
    if rows:
        conn.execute(insert(alert_deliveries), rows)


def _merge(old: Mapping[str, Any], new: Mapping[str, Any], weight: int) -> dict[str, Any]:
    merged = dict(old)
    for k, v in new.items():
        if isinstance(v, dict):
            counts = dict(merged.get(k) or {})
            for name, n in v.items():
                counts[name] = counts.get(name, 0) + n * weight
            merged[k] = counts
        else:
            merged[k] = v
    return merged


def _rule(policy: AlertPolicy, kind: str) -> AlertRule | None:
    return {"drops": policy.drops, "failures": policy.failures}.get(kind)


def _quiet(row: Mapping[str, Any], rule: AlertRule, now: datetime) -> bool:
    return (now - as_utc(row["last_at"])).total_seconds() > rule.window


def _resolve(conn: Connection, row: Mapping[str, Any], at: datetime) -> None:
    conn.execute(update(alerts).where(a.id == row["id"]).values(status="resolved", resolved_at=at))


def _span(seconds: int) -> str:
    return describe_seconds(seconds)
