"""Window queries over the rollup buckets: per workflow, per version, and the account's worst performers.

A window is whole spans ending with the current one: ``24h`` is the current UTC hour and the 23
before it (hourly buckets), ``7d`` and ``30d`` today (UTC) and the 6 or 29 days before (daily
buckets). The previous window is the same number of spans just before, for deltas. Every query
reads buckets only, never executions: its cost depends on the number of workflows, versions and
spans, not on how many executions ran.

The figures of a set of buckets are made by :func:`figures`, a pure function, the same for every
view (API, CLI, and the console later).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, func, literal, select

from controller.errors import NotFoundError, UsageError
from controller.metrics.rollup import DAY, HOUR, SPANS, starts
from controller.store.tables import (
    DURATION_BOUNDS,
    HISTOGRAM,
    as_utc,
    metric_actions,
    metric_buckets,
    metric_failures,
    workflow_versions,
    workflows,
)

WINDOWS: Mapping[str, tuple[str, int]] = {"24h": (HOUR, 24), "7d": (DAY, 7), "30d": (DAY, 30)}
"""Window name -> (span, number of spans)."""
SUMS = ("executions", "succeeded", "failed", "terminated", "duration_sum", "active_sum", "wait_sum", "dropped",
        "refused", "filtered", *HISTOGRAM)
MAXES = ("duration_max", "active_max")
TOP = 5  # slowest and most failing actions shown
WORST = 10  # rows of each account ranking
MIN_EXECUTIONS = 10  # a workflow needs this many executions in the window to be ranked
NOT_RANKED = frozenset({"wait"})  # a wait step is slow on purpose
CHANGE_SECONDS = 0.1  # a p95 change smaller than this is not worth a sentence, however large the ratio


@dataclass(frozen=True)
class Window:
    name: str
    span: str
    start: datetime  # of the current window (inclusive)
    end: datetime  # exclusive: the end of the current span
    previous_start: datetime

    def view(self) -> dict[str, Any]:
        """``from`` and ``to`` of the current window; the previous one runs from ``previous_from`` to ``from``."""
        return {"window": self.name, "from": self.start.isoformat(), "to": self.end.isoformat(),
                "previous_from": self.previous_start.isoformat()}


def window(name: str, now: datetime) -> Window:
    """The window ``name`` (24h, 7d, 30d) as of ``now``; UsageError for another name."""
    if name not in WINDOWS:
        raise UsageError(f"unknown window {name!r}; use one of {', '.join(WINDOWS)}")
    span, count = WINDOWS[name]
    current = dict(starts(now))[span]
    end = current + SPANS[span]
    length = SPANS[span] * count
    return Window(name, span, end - length, end, end - 2 * length)


# -- pure: figures of summed buckets --------------------------------------------------------------


def percentile(histogram: list[int], q: float) -> float | None:
    """The ``q`` quantile of a fixed-bucket histogram, interpolated inside its bucket (like
    Prometheus's ``histogram_quantile``); above the last bound it answers the last bound."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(histogram):
        if count and seen + count >= rank:
            if i == len(DURATION_BOUNDS):
                return DURATION_BOUNDS[-1]
            low = DURATION_BOUNDS[i - 1] if i else 0.0
            return low + (DURATION_BOUNDS[i] - low) * (rank - seen) / count
        seen += count
    return DURATION_BOUNDS[-1]


def brief(sums: Mapping[str, Any] | None) -> dict[str, Any]:
    """The figures of summed buckets without failures and actions: volume, success rate, active and
    waiting time, what admission did not start."""
    s: Mapping[str, Any] = sums or {}
    n = int(s.get("executions") or 0)
    succeeded, failed, terminated = (int(s.get(k) or 0) for k in ("succeeded", "failed", "terminated"))
    decided = succeeded + failed  # an operator's cancel is no verdict on the workflow
    histogram = [int(s.get(name) or 0) for name in HISTOGRAM]
    return {
        "executions": n, "succeeded": succeeded, "failed": failed, "terminated": terminated,
        "success_rate": _round(succeeded / decided, 4) if decided else None,
        "avg_active_seconds": _round(s["active_sum"] / n) if n else None,
        "p50_active_seconds": _round(percentile(histogram, 0.5)),
        "p95_active_seconds": _round(percentile(histogram, 0.95)),
        "max_duration_seconds": _round(s.get("duration_max")) if n else None,
        "avg_wait_seconds": _round(s["wait_sum"] / n) if n else None,
        "dropped": int(s.get("dropped") or 0), "refused": int(s.get("refused") or 0),
        "filtered": int(s.get("filtered") or 0),
    }


def figures(sums: Mapping[str, Any] | None, failures: Mapping[str, int] | None = None,
            actions: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """:func:`brief`, with failures by class and the slowest and most failing actions."""
    rows = [dict(a) for a in actions]
    for a in rows:
        a["avg_seconds"] = _round(a["duration_sum"] / a["count"]) if a["count"] else None
        a["max_seconds"] = _round(a.pop("duration_max"))
        a["failure_rate"] = _round(a["failures"] / a["count"], 4) if a["count"] else None
        del a["duration_sum"]
    slowest = sorted((a for a in rows if a["type"] not in NOT_RANKED and a["count"]),
                     key=lambda a: (-(a["avg_seconds"] or 0), a["action"]))[:TOP]
    failing = sorted((a for a in rows if a["failures"]), key=lambda a: (-a["failures"], a["action"]))[:TOP]
    return {**brief(sums), "failures": dict(sorted((failures or {}).items(), key=lambda kv: (-kv[1], kv[0]))),
            "slowest_actions": slowest, "failing_actions": failing}


DELTAS = ("executions", "success_rate", "failed", "avg_active_seconds", "p95_active_seconds", "avg_wait_seconds",
          "dropped")


def delta(current: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
    """Current minus previous, per figure; None where either side has no value."""
    out: dict[str, Any] = {}
    for name in DELTAS:
        a, b = current.get(name), previous.get(name)
        out[name] = None if a is None or b is None else a - b if isinstance(a, int) and isinstance(b, int) \
            else _round(a - b, 4)
    return out


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


# -- queries ---------------------------------------------------------------------------------------


def workflow_metrics(conn: Connection, key: str, name: str, now: datetime, *, by_version: bool = False) -> dict[str, Any]:
    """The figures of one workflow over window ``name`` and the previous window, with deltas;
    ``by_version`` adds the same figures per version, with its commit, author and summary."""
    w = window(name, now)
    workflow_id = _workflow_id(conn, key)
    periods = _periods(conn, w, [workflow_id], per_version=by_version)
    whole = _over_versions(periods) if by_version else periods  # the split, summed: no second round of queries
    current, previous = (_figures_of(whole, period, workflow_id) for period in ("current", "previous"))
    result: dict[str, Any] = {"workflow": key, **w.view(), "current": current, "previous": previous,
                              "delta": delta(current, previous)}
    if by_version:
        result["versions"] = _versions(conn, periods, workflow_id)
        result["changes"] = changes(result["versions"])
    return result


def account_metrics(conn: Connection, account: str, name: str, now: datetime, *,
                    min_executions: int = MIN_EXECUTIONS) -> dict[str, Any]:
    """The account's totals over window ``name`` and its worst performers: the most failing, the
    slowest p95 and the most dropped workflows, each row with its delta against the previous window."""
    w, rows, totals = account_rows(conn, account, name, now)
    ranked = [r for r in rows if r["executions"] >= min_executions]
    failing = sorted((r for r in ranked if r["failed"] or r["terminated"]),
                     key=lambda r: (-(r["failed"] + r["terminated"]), r["success_rate"] if r["success_rate"] is not None
                                    else 1.0, r["workflow"]))[:WORST]
    slowest = sorted((r for r in ranked if r["p95_active_seconds"] is not None),
                     key=lambda r: (-r["p95_active_seconds"], r["workflow"]))[:WORST]
    drops = sorted((r for r in rows if r["dropped"]), key=lambda r: (-r["dropped"], r["workflow"]))[:WORST]
    current, previous = brief(totals.get("current")), brief(totals.get("previous"))
    return {"account": account, **w.view(), "min_executions": min_executions,
            "totals": {**current, "workflows": sum(1 for r in rows if r["executions"])},
            "delta": delta(current, previous),
            "worst": failing, "slowest": slowest, "most_dropped": drops}


def account_rows(conn: Connection, account: str, name: str, now: datetime
                 ) -> tuple[Window, list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every workflow of the account with figures in window ``name`` or the one before it (its ranked
    figures and their delta), and the account's summed buckets per period; one query."""
    w = window(name, now)
    b = metric_buckets.c
    period = case((b.start >= w.start, literal("current")), else_=literal("previous")).label("period")
    columns = [*(func.sum(getattr(b, n)).label(n) for n in SUMS), *(func.max(getattr(b, n)).label(n) for n in MAXES)]
    where = (b.account == account, b.span == w.span, b.start >= w.previous_start, b.start < w.end)
    per: dict[int, dict[str, dict[str, Any]]] = {}
    totals: dict[str, dict[str, Any]] = {}
    for row in conn.execute(select(b.workflow_id, period, *columns).where(*where).group_by(b.workflow_id, period)
                            ).mappings():
        found = dict(row)
        per.setdefault(found["workflow_id"], {})[found["period"]] = found
        total = totals.setdefault(found["period"], dict.fromkeys((*SUMS, *MAXES), 0))
        for n in SUMS:
            total[n] += found[n] or 0
        for n in MAXES:
            total[n] = max(total[n], found[n] or 0)
    keys = dict(conn.execute(select(workflows.c.id, workflows.c.key).where(workflows.c.id.in_(list(per)))).all())
    rows = []
    for workflow_id, periods in per.items():
        cur, prev = brief(periods.get("current")), brief(periods.get("previous"))
        if cur["executions"] or cur["dropped"] or prev["executions"]:
            rows.append({"workflow": keys[workflow_id], **_ranked(cur), "delta": delta(cur, prev)})
    return w, rows, totals


def changes(versions: list[dict[str, Any]]) -> list[str]:
    """Sentences for what a version changed against the one before it in the window (newest first):
    "since v3 (commit abc1234) the success rate fell from 99.0% to 71.0%"."""
    return [sentence for _, sentence in change_points(versions)]


def change_points(versions: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(version, sentence) for each change :func:`changes` reports."""
    out = []
    ordered = sorted((v for v in versions if v["version"]), key=lambda v: v["version"])
    for before, after in itertools.pairwise(ordered):
        since = f"since v{after['version']} (commit {after['commit'][:7]})" if after.get("commit") else \
            f"since v{after['version']}"
        a, b = before["success_rate"], after["success_rate"]
        if a is not None and b is not None and abs(a - b) >= 0.01:
            out.append((after["version"], (f"{since} the success rate {'fell' if b < a else 'rose'} from {a:.1%} to "
                                          f"{b:.1%}")))
        a, b = before["p95_active_seconds"], after["p95_active_seconds"]
        if a and b and (b >= 1.5 * a or b <= a / 1.5) and abs(b - a) >= CHANGE_SECONDS:
            out.append((after["version"], (f"{since} the p95 active time {'grew' if b > a else 'shrank'} from {a:g} s "
                                          f"to {b:g} s")))
    return out


def _ranked(f: Mapping[str, Any]) -> dict[str, Any]:
    return {n: f[n] for n in ("executions", "succeeded", "failed", "terminated", "success_rate", "p95_active_seconds",
                              "avg_active_seconds", "dropped")}


def _workflow_id(conn: Connection, key: str) -> int:
    found = conn.execute(select(workflows.c.id).where(workflows.c.key == key)).scalar()
    if found is None:
        raise NotFoundError(f"no workflow {key!r}; see `wfctl status`", workflow=key)
    return int(found)


def _periods(conn: Connection, w: Window, workflow_ids: list[int], *, per_version: bool
             ) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Summed buckets, failures and actions keyed by (period, workflow_id[, version])."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for table, kind in ((metric_buckets, "sums"), (metric_failures, "failures"), (metric_actions, "actions")):
        c = table.c
        period = case((c.start >= w.start, literal("current")), else_=literal("previous")).label("period")
        group = [period, c.workflow_id, *([c.version] if per_version else [])]
        if kind == "sums":
            cols = [*(func.sum(getattr(c, n)).label(n) for n in SUMS), *(func.max(getattr(c, n)).label(n) for n in MAXES)]
        elif kind == "failures":
            group.append(c.failure)
            cols = [func.sum(c.count).label("count")]
        else:
            group += [c.action_id, c.type]
            cols = [func.sum(c.count).label("count"), func.sum(c.failures).label("failures"),
                    func.sum(c.duration_sum).label("duration_sum"), func.max(c.duration_max).label("duration_max")]
        span = HOUR if table is metric_actions else w.span  # (actions are kept per hour only)
        query = (select(*group, *cols).where(and_(c.workflow_id.in_(workflow_ids), c.span == span,
                                                  c.start >= w.previous_start, c.start < w.end)).group_by(*group))
        for row in conn.execute(query).mappings():
            key = (row["period"], row["workflow_id"], *([row["version"]] if per_version else []))
            entry = out.setdefault(key, {"sums": None, "failures": {}, "actions": []})
            if kind == "sums":
                entry["sums"] = dict(row)
            elif kind == "failures":
                entry["failures"][row["failure"]] = int(row["count"])
            else:
                entry["actions"].append({"action": row["action_id"], "type": row["type"], "count": int(row["count"]),
                                         "failures": int(row["failures"]), "duration_sum": row["duration_sum"],
                                         "duration_max": row["duration_max"]})
    return out


def _figures_of(periods: Mapping[tuple[Any, ...], dict[str, Any]], *key: Any) -> dict[str, Any]:
    entry = periods.get(key) or {}
    return figures(entry.get("sums"), entry.get("failures"), entry.get("actions", []))


def _over_versions(periods: Mapping[tuple[Any, ...], dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Per-version entries of :func:`_periods` summed per (period, workflow), as ``per_version=False`` gives."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for (period, workflow_id, _), entry in periods.items():
        into = out.setdefault((period, workflow_id), {"sums": None, "failures": {}, "actions": {}})
        if entry["sums"] is not None:
            sums = into["sums"] = dict(into["sums"] or dict.fromkeys((*SUMS, *MAXES), 0))
            for n in SUMS:
                sums[n] += entry["sums"][n] or 0
            for n in MAXES:
                sums[n] = max(sums[n], entry["sums"][n] or 0)
        for failure, count in entry["failures"].items():
            into["failures"][failure] = into["failures"].get(failure, 0) + count
        for action in entry["actions"]:
            same = into["actions"].setdefault((action["action"], action["type"]), {
                **action, "count": 0, "failures": 0, "duration_sum": 0.0, "duration_max": 0.0})
            for n in ("count", "failures", "duration_sum"):
                same[n] += action[n]
            same["duration_max"] = max(same["duration_max"], action["duration_max"])
    for into in out.values():
        into["actions"] = list(into["actions"].values())
    return out


def _versions(conn: Connection, periods: Mapping[tuple[Any, ...], dict[str, Any]], workflow_id: int
              ) -> list[dict[str, Any]]:
    numbers = sorted({key[2] for key in periods if key[0] == "current"}, reverse=True)
    v = workflow_versions.c
    meta = {row.version: row for row in conn.execute(
        select(v.version, v.commit, v.author, v.committed_at, v.summary)
        .where(v.workflow_id == workflow_id, v.version.in_(numbers)))}
    out = []
    for number in numbers:
        row = meta.get(number)
        info = ({"commit": row.commit, "author": row.author, "committed_at": as_utc(row.committed_at).isoformat(),
                 "summary": row.summary} if row is not None else
                {"commit": None, "author": None, "committed_at": None,
                 "summary": "never started (terminated or refused while queued)" if number == 0 else ""})
        out.append({"version": number, **info, **_figures_of(periods, "current", workflow_id, number)})
    return out



def daily_executions(conn: Connection, account: str, now: datetime, *, days: int = 30) -> dict[str, list[int]]:
    """Finished executions per UTC day of each workflow of the account, oldest first, ``days`` long
    (today included): the console's sparklines."""
    today = dict(starts(now))[DAY]
    first = today - SPANS[DAY] * (days - 1)
    b = metric_buckets.c
    rows = conn.execute(select(workflows.c.key, b.start, func.sum(b.executions))
                        .join(workflows, workflows.c.id == b.workflow_id)
                        .where(b.account == account, b.span == DAY, b.start >= first)
                        .group_by(workflows.c.key, b.start))
    found: dict[str, list[int]] = {}
    for key, start, count in rows:
        index = int((as_utc(start) - first).total_seconds() // SPANS[DAY].total_seconds())
        if 0 <= index < days:
            found.setdefault(key, [0] * days)[index] = int(count)
    return found


def daily_series(conn: Connection, key: str, now: datetime, *, days: int = 30) -> list[dict[str, Any]]:
    """One workflow's finished executions per UTC day, oldest first, ``days`` long (the console's chart)."""
    workflow_id = _workflow_id(conn, key)
    today = dict(starts(now))[DAY]
    first = today - SPANS[DAY] * (days - 1)
    b = metric_buckets.c
    found = {as_utc(row[0]): row[1:] for row in conn.execute(
        select(b.start, *(func.sum(getattr(b, n)) for n in SUMS), *(func.max(getattr(b, n)) for n in MAXES))
        .where(b.workflow_id == workflow_id, b.span == DAY, b.start >= first).group_by(b.start))}
    out = []
    for i in range(days):
        day = first + SPANS[DAY] * i
        figures_of_day = brief(dict(zip((*SUMS, *MAXES), found[day], strict=True)) if day in found else None)
        out.append({"day": day.date().isoformat(), **{k: figures_of_day[k] for k in (
            "executions", "succeeded", "failed", "success_rate", "p95_active_seconds")}})
    return out
