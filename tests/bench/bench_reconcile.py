#!/usr/bin/env python3
"""Benchmark of the reconciler on a large, realistic repository (not collected by pytest).

    python tests/bench/bench_reconcile.py [--workflows 10000] [--accounts 20] [--commits 1000] [--keep DIR]

What it does:

1. Generates a real git repository in a temporary folder: ``workflows.d/<account>/<name>.yaml`` for N
   valid, varied workflows (every trigger type and action kind; ``workflow.call`` only targets
   sub-workflows of the same account, which call nothing, so there are no cycles), and a history of C
   commits: the first commits import the files in batches, the rest edit one to a few files each (a
   few add or delete a workflow). The history is written with one ``git fast-import`` stream, then the
   branch is checked out as a normal working tree. Generation is not measured.
2. Runs each measured operation in a fresh Python process (this file, ``_run`` mode), which reports
   its own RUSAGE_SELF peak RSS, the time of the imports and, for a sync, of ``Reconciler.sync()``
   alone. "wall s" is measured around the whole process, so it includes interpreter start-up; the
   ``cli`` mode calls ``controller.cli.main`` exactly as the ``wfctl`` console script does.
   - first sync (``wfctl sync``, SQLite), ``wfctl validate``, one-file syncs (commit one edit, sync;
     repeated), the same one-file sync timing only ``Reconciler.sync()`` in-process, a no-change sync;
   - on PostgreSQL too when ``WFC_TEST_DATABASE_URL`` is set (a dedicated schema, dropped afterwards).
3. Prints a table against the aims of issue 16 (first sync <= 6 s and <= 250 MB, one-file ``Reconciler.sync()``
   <= 30 ms).
4. Profiles (cProfile) a first sync and a one-file sync in-process and prints the top functions by
   cumulative and by own time. With ``--keep`` the ``.prof`` files stay next to the repository.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

# --------------------------------------------------------------------------------------------------
# The measuring side: ``python bench_reconcile.py _run MODE RESULT_FILE ARGS...`` in a fresh process.
# Kept first and free of heavy imports so that what it reports is the controller's cost.
# --------------------------------------------------------------------------------------------------

_T0 = time.perf_counter()


def _plan_info(plan: object) -> dict[str, object]:
    from controller.reconcile.plan import VersionOp

    ops = getattr(plan, "ops", ())
    return {
        "full": bool(getattr(plan, "full", False)),
        "ops": len(ops),
        "versions": sum(isinstance(op, VersionOp) for op in ops),
        "invalid": len(getattr(plan, "invalid", {})),
    }


def _profile_tables(profile: object, top: int, repo_dir: str) -> dict[str, str]:
    import pstats

    stats = pstats.Stats(profile)  # type: ignore[arg-type]
    prefixes = sorted({p for p in sys.path if p and os.path.isdir(p)} | {repo_dir}, key=len, reverse=True)

    def where(key: tuple[str, int, str]) -> str:
        filename, line, func = key
        for prefix in prefixes:
            if filename.startswith(prefix + os.sep):
                filename = filename[len(prefix) + 1 :]
                break
        return f"{func}  ({filename}:{line})" if filename != "~" else func

    rows = [(ct, tt, nc, cc, key) for key, (cc, nc, tt, ct, _callers) in stats.stats.items()]  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]

    def render(sorted_rows: list[tuple[float, float, int, int, tuple[str, int, str]]]) -> str:
        lines = [f"{'cum s':>8} {'cum %':>6} {'own s':>8} {'calls':>9}  function"]
        for ct, tt, nc, cc, key in sorted_rows[:top]:
            calls = f"{nc}" if nc == cc else f"{nc}/{cc}"
            lines.append(
                f"{ct:8.3f} {100 * ct / total if total else 0:5.1f}% {tt:8.3f} {calls:>9}  {where(key)}"
            )
        return "\n".join(lines)

    return {
        "total_s": f"{total:.3f}",
        "cumulative": render(sorted(rows, key=lambda r: r[0], reverse=True)),
        "own": render(sorted(rows, key=lambda r: r[1], reverse=True)),
    }


def _runner(argv: list[str]) -> None:
    mode, result_file, *rest = argv
    result: dict[str, object] = {"mode": mode}
    try:
        if mode == "cli":
            import controller.cli as cli_module
            from controller.reconcile.reconciler import Reconciler

            result["import_s"] = time.perf_counter() - _T0
            original = Reconciler.sync

            def timed_sync(self: Reconciler):  # type: ignore[no-untyped-def]
                start = time.perf_counter()
                plan = original(self)
                result["sync_s"] = time.perf_counter() - start
                result.update(_plan_info(plan))
                return plan

            Reconciler.sync = timed_sync  # type: ignore[method-assign]
            sys.argv = ["wfctl", *rest]
            try:
                cli_module.main()
                code: object = 0
            except SystemExit as exit_:
                code = exit_.code
            result["exit"] = code if isinstance(code, int) else (0 if code is None else 2)
        elif mode in ("inproc", "profile"):
            repo, data_dir, db_url, profile_file = (rest + ["", ""])[:4]
            from pathlib import Path

            from controller.settings import Settings

            result["import_s"] = time.perf_counter() - _T0
            settings = Settings(repo=repo, data_dir=Path(data_dir), database_url=db_url or None)
            start = time.perf_counter()
            with settings.reconciler() as reconciler:
                result["open_s"] = time.perf_counter() - start
                if mode == "profile":
                    import cProfile

                    profiler = cProfile.Profile()
                    start = time.perf_counter()
                    profiler.enable()
                    plan = reconciler.sync()
                    profiler.disable()
                    result["sync_s"] = time.perf_counter() - start
                    profiler.dump_stats(profile_file)
                    result.update(_profile_tables(profiler, 15, str(Path(__file__).resolve().parents[2])))
                else:
                    start = time.perf_counter()
                    plan = reconciler.sync()
                    result["sync_s"] = time.perf_counter() - start
                result.update(_plan_info(plan))
            result["exit"] = 0
        else:
            raise SystemExit(f"unknown runner mode {mode!r}")
    except BaseException as error:  # noqa: BLE001 - report it to the parent instead of dying silently
        import traceback

        result["exit"] = result.get("exit", 2)
        result["error"] = f"{type(error).__name__}: {error}"
        result["traceback"] = traceback.format_exc(limit=8)
    finally:
        result["run_s"] = time.perf_counter() - _T0
        result["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with open(result_file, "w", encoding="utf-8") as out:
            json.dump(result, out)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "_run":
    _runner(sys.argv[2:])
    sys.exit(0)


# --------------------------------------------------------------------------------------------------
# The generating and orchestrating side.
# --------------------------------------------------------------------------------------------------

import argparse
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = "workflows.d"
BRANCH = "main"
SCHEMA_COMMENT = "# yaml-language-server: $schema=../../schemas/workflow.v1.schema.json\n"

ACCOUNTS = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark-industries",
    "wayne-enterprises",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "aperture",
    "vandelay",
    "massive-dynamic",
    "oscorp",
    "gringotts",
    "monarch",
    "pied-piper",
    "dunder-mifflin",
    "sterling-cooper",
]
AUTHORS = [
    ("Alice Example", "alice@acme.test"),
    ("Bob Builder", "bob@acme.test"),
    ("Chandra Rao", "chandra@globex.test"),
    ("Dmitri Volkov", "dmitri@initech.test"),
    ("Eve Martin", "eve@hooli.test"),
    ("Farah Haddad", "farah@wonka.test"),
    ("Gus Tavares", "gus@aperture.test"),
    ("Hana Sato", "hana@monarch.test"),
]
ENTITIES = ["issue", "ticket", "task", "lead", "deal", "opportunity", "contact"]
TEAMS = ["support", "sales", "sales-ops", "marketing", "sre", "finance", "success", "ops", "legal", "hr"]
VERBS = [
    "escalate",
    "notify",
    "triage",
    "route",
    "remind",
    "archive",
    "welcome",
    "qualify",
    "assign",
    "close",
    "review",
    "report",
    "score",
    "tag",
    "follow-up",
    "page",
    "summarize",
    "enrich",
    "dedupe",
    "sync",
]
ADJECTIVES = [
    "urgent",
    "stale",
    "new",
    "overdue",
    "vip",
    "inbound",
    "weekly",
    "daily",
    "open",
    "won",
    "lost",
    "quiet",
    "critical",
    "unassigned",
    "renewal",
    "trial",
]
CRONS = [
    "0 8 * * 1-5",
    "30 7 * * 1",
    "*/15 * * * *",
    "0 */2 * * *",
    "5,35 * * * *",
    "0 9 1 * *",
    "45 17 * * 5",
    "*/30 9-17 * * 1-5",
    "0 6,18 * * *",
    "10 0 * * *",
    "*/5 * * * *",
    "0 12 * * 0",
]
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/Chicago",
    "America/New_York",
    "Asia/Tokyo",
    "Europe/London",
    "Australia/Sydney",
    "America/Sao_Paulo",
]
EVERY = ["5m", "15m", "30m", "1h", "6h", "12h", "1d"]
INACTIVITY = ["15m", "30m", "2h", "1d", "3d", "7d", "14d"]
WAITS = ["30s", "5m", "15m", "1h", "4h", "1d", "2d", "3d"]
BACKOFF = ["10s", "30s", "1m", "5m"]
PHRASES = [
    "Heads up",
    "Action needed",
    "FYI",
    "Reminder",
    "Please review",
    "New",
    "Update",
    "Escalation",
    "Follow-up",
    "Daily digest",
    "Weekly summary",
    "Attention",
    "Check",
    "Overdue",
]

# What templates can read, by what started the run.
CONTEXTS: dict[str, dict[str, list[str]]] = {
    "record": {
        "values": [
            "record.title",
            "record.id",
            "record.name",
            "record.status",
            "record.priority",
            "record.stage",
            "record.owner.name",
            "record.company",
            "record.amount | default(0)",
            "record.title | upper",
            "record.tags | default([]) | join(', ')",
        ],
        "emails": ["record.owner.email", "record.assignee.email", "record.email", "record.reporter.email"],
        "conditions": [
            "record.priority == 'urgent'",
            "record.status != 'closed'",
            "record.amount | default(0) > 10000",
            "record.stage in ['qualified', 'proposal']",
            "record.owner is defined",
            "'vip' in record.tags | default([])",
            "record.status == 'new' and record.priority != 'low'",
        ],
        "id": ["record.id"],
    },
    "webhook": {
        "values": [
            "trigger.body.name",
            "trigger.body.email",
            "trigger.body.message",
            "trigger.body.severity | upper",
            "trigger.body.id",
            "trigger.body.service",
            "trigger.body.alert",
        ],
        "emails": ["trigger.body.email", "trigger.body.reply_to | default('ops@example.test')"],
        "conditions": [
            "trigger.body.severity == 'critical'",
            "trigger.body.email is defined",
            "trigger.body.score | default(0) > 0.5",
            "trigger.body.kind in ['signup', 'demo']",
        ],
        "id": ["trigger.body.id"],
    },
    "email": {
        "values": [
            "trigger.subject",
            "trigger.from",
            "trigger.text | truncate(200)",
            "trigger.subject | lower",
        ],
        "emails": ["trigger.from"],
        "conditions": [
            "'invoice' in trigger.subject | lower",
            "not trigger.subject.startswith('Automatic reply')",
            "trigger.from.endswith('@partner.test')",
            "'urgent' in trigger.text | lower",
        ],
        "id": ["trigger.message_id"],
    },
    "schedule": {
        "values": [
            "now",
            "workflow.name",
            "account.name",
            "now.strftime('%Y-%m-%d')",
            "vars.count | default(0)",
        ],
        "emails": ["account.owner_email | default('ops@example.test')"],
        "conditions": ["now.weekday() < 5", "vars.count | default(0) > 0", "account.plan == 'enterprise'"],
        "id": ["vars.batch_id | default('none')"],
    },
    "input": {  # a sub-workflow started by workflow.call (or by hand)
        "values": [
            "trigger.input.subject",
            "trigger.input.link",
            "trigger.input.id",
            "trigger.input.summary",
        ],
        "emails": ["trigger.input.email | default('managers@example.test')"],
        "conditions": ["trigger.input.urgent | default(false)", "trigger.input.link is defined"],
        "id": ["trigger.input.id"],
    },
}


# -- a tiny YAML emitter (ruamel's dumper is far too slow for 10,000 files) -----------------------

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9 _./@:()?=&%+-]*[A-Za-z0-9_./)]$|^[A-Za-z]$")
_DURATION = re.compile(r"^[1-9][0-9]*[smhd]$")
_RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def _scalar(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if _DURATION.match(text):
        return text
    if _PLAIN.match(text) and ": " not in text and " #" not in text and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)


def _flow(value: Any) -> str | None:
    if isinstance(value, dict):
        if not value:
            return "{}"
        if (
            len(value) <= 4
            and "type" not in value
            and all(
                not isinstance(v, dict | list) and not (isinstance(v, str) and "\n" in v)
                for v in value.values()
            )
        ):
            text = "{" + ", ".join(f"{k}: {_flow_scalar(v)}" for k, v in value.items()) + "}"
            return text if len(text) <= 64 else None
        return None
    if isinstance(value, list):
        if not value:
            return "[]"
        if all(not isinstance(v, dict | list) for v in value):
            text = "[" + ", ".join(_flow_scalar(v) for v in value) + "]"
            return text if len(text) <= 64 else None
    return None


def _flow_scalar(value: Any) -> str:
    text = _scalar(value)
    return (
        json.dumps(str(value))
        if isinstance(value, str) and text == value and ("," in text or ":" in text)
        else text
    )


def _emit_map(mapping: dict[str, Any], indent: int, lines: list[str], first: str | None = None) -> None:
    pad = " " * indent
    items = [(k, v) for k, v in mapping.items() if v is not None]
    for index, (key, value) in enumerate(items):
        prefix = first if (index == 0 and first is not None) else pad
        if isinstance(value, str) and "\n" in value:
            lines.append(f"{prefix}{key}: |")
            lines.extend((pad + "  " + line) if line else "" for line in value.rstrip("\n").split("\n"))
        elif not isinstance(value, dict | list):
            lines.append(f"{prefix}{key}: {_scalar(value)}")
        else:
            flow = _flow(value)
            if flow is not None:
                lines.append(f"{prefix}{key}: {flow}")
            elif isinstance(value, dict):
                lines.append(f"{prefix}{key}:")
                _emit_map(value, indent + 2, lines)
            else:
                lines.append(f"{prefix}{key}:")
                _emit_seq(value, indent + 2, lines)


def _emit_seq(items: list[Any], indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for item in items:
        if isinstance(item, dict):
            _emit_map(item, indent + 2, lines, first=pad + "- ")
        else:
            lines.append(f"{pad}- {_scalar(item)}")


def render(doc: dict[str, Any]) -> str:
    lines: list[str] = []
    _emit_map(doc, 0, lines)
    return SCHEMA_COMMENT + "\n".join(lines) + "\n"


# -- workflow generation --------------------------------------------------------------------------


@dataclass
class Wf:
    account: str
    name: str
    doc: dict[str, Any]
    sub: bool = False  # a sub-workflow: manual trigger, called by others, calls nothing
    revision: int = 0

    @property
    def path(self) -> str:
        return f"{ROOT}/{self.account}/{self.name}.yaml"

    @property
    def key(self) -> str:
        return f"{self.account}/{self.name}"


@dataclass
class _Build:
    """State while building one workflow's actions."""

    rng: random.Random
    ctx: str
    tag: str
    subs: list[str]
    ids: set[str] = field(default_factory=set)
    http_steps: list[str] = field(default_factory=list)

    def new_id(self, base: str) -> str:
        candidate, n = base, 2
        while candidate in self.ids:
            candidate, n = f"{base}-{n}", n + 1
        self.ids.add(candidate)
        return candidate

    def value(self) -> str:
        rng = self.rng
        if self.http_steps and rng.random() < 0.3:
            step = rng.choice(self.http_steps)
            return f"steps['{step}'].output.json.{rng.choice(['id', 'count', 'items | length', 'status', 'url'])}"
        return rng.choice(CONTEXTS[self.ctx]["values"])

    def tmpl(self, expr: str | None = None) -> str:
        return "{{ " + (expr or self.value()) + " }}"

    def condition(self) -> str:
        rng = self.rng
        if self.http_steps and rng.random() < 0.4:
            step = rng.choice(self.http_steps)
            return (
                "{{ "
                + f"steps['{step}'].output.json.{rng.choice(['items', 'changes', 'deals'])} | length > 0"
                + " }}"
            )
        return "{{ " + rng.choice(CONTEXTS[self.ctx]["conditions"]) + " }}"

    def text(self) -> str:
        rng = self.rng
        words = f"{rng.choice(PHRASES)}: {self.tmpl()}"
        if rng.random() < 0.6:
            words += f" ({self.tag})"
        if rng.random() < 0.4:
            words += f" - {self.tmpl()}"
        return words

    def retry(self) -> dict[str, Any] | None:
        return (
            {"attempts": self.rng.randint(2, 5), "backoff": self.rng.choice(BACKOFF)}
            if self.rng.random() < 0.3
            else None
        )


def _email(b: _Build) -> dict[str, Any]:
    rng = b.rng
    to: Any = rng.choice(
        [
            "{{ " + rng.choice(CONTEXTS[b.ctx]["emails"]) + " }}",
            f"user:u_{rng.choice(['alice', 'bob', 'carol', 'dave', 'erin'])}",
            f"{rng.choice(['lead', 'ops', 'billing', 'team'])}@{rng.choice(['acme', 'globex', 'initech'])}.test",
            ["user:u_alice", "user:u_bob"],
        ]
    )
    body: str
    if rng.random() < 0.5:
        body = (
            f"Hello,\n\n{rng.choice(PHRASES)} about {b.tmpl()}.\n\n"
            f"Details: {b.tmpl()}\nSent by workflow {b.tag}.\n"
        )
    else:
        body = f"{rng.choice(PHRASES)}: {b.tmpl()} ({b.tmpl()})"
    action = {
        "id": b.new_id(
            rng.choice(["mail-owner", "mail-lead", "notify-customer", "send-summary", "acknowledge"])
        ),
        "type": "email.send",
        "mailbox": f"mailbox:mb_{rng.choice(['support', 'sales', 'ops', 'billing', 'noreply'])}",
        "to": to,
        "cc": ("{{ " + rng.choice(CONTEXTS[b.ctx]["emails"]) + " }}") if rng.random() < 0.2 else None,
        "subject": b.text(),
        "body": body,
        "html": True if rng.random() < 0.15 else None,
        "retry": b.retry(),
    }
    return action


def _channel(b: _Build) -> dict[str, Any]:
    rng = b.rng
    return {
        "id": b.new_id(rng.choice(["post-channel", "tell-team", "announce", "page-oncall", "post-digest"])),
        "type": "channel.post",
        "channel": f"channel:C{rng.randrange(16**8):08X}",
        "text": b.text(),
    }


def _fields(b: _Build, count: int) -> dict[str, Any]:
    rng = b.rng
    names = rng.sample(
        [
            "title",
            "assignee",
            "due_in_days",
            "priority",
            "note",
            "source",
            "owner",
            "stage",
            "escalated",
            "synced_at",
            "lead_id",
            "link",
        ],
        count,
    )
    out: dict[str, Any] = {}
    for name in names:
        if name == "due_in_days":
            out[name] = rng.randint(1, 14)
        elif name == "escalated":
            out[name] = rng.random() < 0.8
        elif name in ("priority", "stage", "source"):
            out[name] = rng.choice(["high", "normal", "low", "qualified", "website", "email", "engaged"])
        elif name == "synced_at":
            out[name] = "{{ now }}"
        else:
            out[name] = b.tmpl() if rng.random() < 0.8 else f"{rng.choice(PHRASES)} {b.tmpl()}"
    return out


def _record_create(b: _Build) -> dict[str, Any]:
    rng = b.rng
    entity = rng.choice(ENTITIES) if rng.random() < 0.85 else f"object_type:ot_{rng.randint(10, 99)}"
    return {
        "id": b.new_id(rng.choice(["create-task", "open-case", "create-record", "log-activity"])),
        "type": "record.create",
        "entity": entity,
        "set": _fields(b, rng.randint(2, 4)),
    }


def _record_update(b: _Build) -> dict[str, Any]:
    rng = b.rng
    return {
        "id": b.new_id(rng.choice(["mark-escalated", "flag-record", "update-status", "stamp-record"])),
        "type": "record.update",
        "entity": rng.choice(ENTITIES),
        "record_id": b.tmpl(rng.choice(CONTEXTS[b.ctx]["id"])),
        "set": _fields(b, rng.randint(1, 3)),
    }


def _http(b: _Build) -> dict[str, Any]:
    rng = b.rng
    method = rng.choice(["GET", "GET", "POST", "PUT", "PATCH", "DELETE"])
    host = f"{rng.choice(['crm', 'erp', 'bi', 'pager', 'partners', 'hooks'])}.{rng.choice(ACCOUNTS[:8])}.test"
    path = f"/api/v{rng.randint(1, 3)}/{rng.choice(['deals', 'tickets', 'events', 'reports', 'scores', 'pages'])}"
    url = f"https://{host}{path}" + (f"?window={rng.choice(EVERY)}" if rng.random() < 0.3 else "")
    if rng.random() < 0.15:
        url = "{{ " + f"vars.base_url | default('https://{host}') ~ '{path}'" + " }}"
    action_id = b.new_id(
        rng.choice(["fetch-data", "call-crm", "send-page", "post-event", "spam-check", "lookup"])
    )
    action: dict[str, Any] = {
        "id": action_id,
        "type": "http.request",
        "method": method if method != "GET" or rng.random() < 0.5 else None,
        "url": url,
    }
    if rng.random() < 0.5:
        action["headers"] = (
            {"Accept": "application/json"}
            if rng.random() < 0.6
            else {
                "Content-Type": "application/json",
                "Idempotency-Key": f"{b.tag}-{b.tmpl(rng.choice(CONTEXTS[b.ctx]['id']))}",
            }
        )
    if method in ("POST", "PUT", "PATCH"):
        if rng.random() < 0.8:
            action["json"] = (
                {"source": b.tag, "value": b.tmpl(), "at": "{{ now }}"}
                if rng.random() < 0.5
                else {
                    "items": [b.tmpl(), b.tmpl()],
                    "meta": {"urgent": rng.random() < 0.5, "count": rng.randint(1, 9)},
                }
            )
        else:
            action["body"] = f"{rng.choice(PHRASES)} {b.tmpl()}"
    if rng.random() < 0.6:
        action["expect_status"] = rng.choice([[200], [200, 201], [200, 201, 202], [204]])
    if rng.random() < 0.5:
        action["timeout"] = rng.choice(["10s", "15s", "30s", "1m"])
    action["retry"] = b.retry()
    b.http_steps.append(action_id)
    return action


def _wait(b: _Build) -> dict[str, Any]:
    return {
        "id": b.new_id(b.rng.choice(["wait-a-bit", "give-them-time", "cool-down", "pause"])),
        "type": "wait",
        "duration": b.rng.choice(WAITS),
    }


def _set(b: _Build) -> dict[str, Any]:
    rng = b.rng
    names = rng.sample(
        ["owner", "first_name", "count", "batch_id", "base_url", "escalated_at", "label", "flag"],
        rng.randint(1, 3),
    )
    values: dict[str, Any] = {}
    for name in names:
        values[name] = rng.choice([b.tmpl(), rng.randint(0, 100), rng.random() < 0.5, "{{ now }}", b.tag])
    return {
        "id": b.new_id(rng.choice(["remember", "set-vars", "normalize", "note-state"])),
        "type": "set",
        "vars": values,
    }


def _call(b: _Build) -> dict[str, Any] | None:
    if not b.subs:
        return None
    rng = b.rng
    return {
        "id": b.new_id(rng.choice(["tell-managers", "call-sub", "escalate", "hand-over"])),
        "type": "workflow.call",
        "workflow": rng.choice(b.subs),
        "input": {
            "subject": b.text(),
            "link": f"https://app.example.test/{b.tag}/" + b.tmpl(rng.choice(CONTEXTS[b.ctx]["id"])),
            "id": b.tmpl(rng.choice(CONTEXTS[b.ctx]["id"])),
        }
        if rng.random() < 0.8
        else None,
    }


SIMPLE = [
    (_email, 5),
    (_channel, 4),
    (_record_create, 3),
    (_record_update, 3),
    (_http, 4),
    (_wait, 2),
    (_set, 2),
]


def _simple(b: _Build, allow_call: bool) -> dict[str, Any]:
    if allow_call and b.rng.random() < 0.12:
        call = _call(b)
        if call is not None:
            return call
    builders, weights = zip(*SIMPLE)
    return b.rng.choices(builders, weights)[0](b)


def _if(b: _Build, allow_call: bool) -> dict[str, Any]:
    rng = b.rng
    action = {
        "id": b.new_id(rng.choice(["still-open", "is-urgent", "any-changes", "looks-real", "needs-review"])),
        "type": "if",
        "condition": b.condition(),
    }
    action["then"] = [_simple(b, allow_call) for _ in range(rng.randint(1, 2))]
    action["else"] = (
        [_simple(b, allow_call) for _ in range(rng.randint(0, 1))] if rng.random() < 0.7 else None
    )
    return action


def _trigger(rng: random.Random, kind: str) -> tuple[dict[str, Any], str]:
    """A trigger of ``kind`` and the template context it gives."""
    if kind == "record":
        t = {
            "type": "record",
            "entity": rng.choice(ENTITIES),
            "events": rng.sample(["created", "updated", "deleted"], rng.randint(1, 2)),
        }
        if rng.random() < 0.6:
            t["when"] = "{{ " + rng.choice(CONTEXTS["record"]["conditions"]) + " }}"
        return t, "record"
    if kind == "schedule":
        if rng.random() < 0.7:
            t = {"type": "schedule", "cron": rng.choice(CRONS)}
            if rng.random() < 0.7:
                t["timezone"] = rng.choice(ZONES)
        else:
            t = {"type": "schedule", "every": rng.choice(EVERY)}
        return t, "schedule"
    if kind == "webhook":
        return {"type": "webhook"}, "webhook"
    if kind == "manual":
        return {"type": "manual", "entities": rng.sample(ENTITIES, rng.randint(1, 3))}, "record"
    if kind == "inactivity":
        t = {"type": "inactivity", "entity": rng.choice(ENTITIES), "after": rng.choice(INACTIVITY)}
        if rng.random() < 0.5:
            t["when"] = "{{ " + rng.choice(CONTEXTS["record"]["conditions"]) + " }}"
        return t, "record"
    t = {"type": "email", "mailbox": f"mailbox:mb_{rng.choice(['support', 'sales', 'billing', 'inbound'])}"}
    if rng.random() < 0.6:
        t["when"] = "{{ " + rng.choice(CONTEXTS["email"]["conditions"]) + " }}"
    return t, "email"


TRIGGER_WEIGHTS = [
    ("record", 30),
    ("schedule", 20),
    ("webhook", 15),
    ("manual", 10),
    ("inactivity", 12),
    ("email", 13),
]


def make_workflow(rng: random.Random, account: str, name: str, sub: bool, subs: list[str]) -> Wf:
    if sub:
        trigger, ctx = {"type": "manual", "entities": rng.sample(ENTITIES, rng.randint(1, 2))}, "input"
    else:
        kinds, weights = zip(*TRIGGER_WEIGHTS)
        trigger, ctx = _trigger(rng, rng.choices(kinds, weights)[0])
    words = name.rsplit("-", 1)[0].replace("-", " ")
    metadata: dict[str, Any] = {
        "name": name,
        "description": f"{words.capitalize()} for the {rng.choice(TEAMS)} team"
        + (f"; {rng.choice(PHRASES).lower()} when needed" if rng.random() < 0.5 else ""),
        "labels": {
            "team": rng.choice(TEAMS),
            **({"kind": "sub-workflow"} if sub else {}),
            **({"tier": rng.choice(["critical", "standard"])} if rng.random() < 0.3 else {}),
        },
    }
    spec: dict[str, Any] = {}
    if rng.random() < 0.3:
        spec["enabled"] = rng.random() < 0.85
    spec["trigger"] = trigger
    if rng.random() < 0.4:
        spec["rateLimit"] = {
            "max": rng.choice([10, 20, 30, 60, 120, 200]),
            "per": rng.choice(["1m", "5m", "1h"]),
        }
    doc = {"apiVersion": "workflows/v1", "kind": "Workflow", "metadata": metadata, "spec": spec}
    # Add actions one by one until the file is 20-40 lines long (a typical hand-written workflow).
    for _attempt in range(50):
        b = _Build(rng, ctx, name, [] if sub else subs)
        spec["actions"] = []
        wanted, lines, misses = rng.randint(22, 38), 0, 0
        while misses < 8:
            saved = (set(b.ids), list(b.http_steps))
            candidate = _if(b, not sub) if rng.random() < 0.25 else _simple(b, not sub)
            spec["actions"].append(candidate)
            size = render(doc).count("\n")
            if size > 40:
                spec["actions"].pop()
                b.ids, b.http_steps = saved
                misses += 1
                continue
            lines = size
            if lines >= wanted:
                break
        if 20 <= lines <= 40:
            break
    return Wf(account, name, doc, sub)


# -- edits: each changes the normalized definition and keeps the file valid -----------------------


def _walk_actions(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for action in actions:
        out.append(action)
        for branch in ("then", "else"):
            if isinstance(action.get(branch), list):
                out.extend(_walk_actions(action[branch]))
    return out


def edit_workflow(rng: random.Random, wf: Wf) -> str:
    """Change ``wf`` in place; return a short description for the commit message."""
    wf.revision += 1
    rev = wf.revision
    spec, metadata = wf.doc["spec"], wf.doc["metadata"]
    actions = _walk_actions(spec["actions"])
    choice = rng.choice(
        ["text", "text", "text", "rate", "enabled", "trigger", "wait", "description", "label"]
    )
    if choice == "text":
        for action in rng.sample(actions, len(actions)):
            for key in ("subject", "text"):
                if key in action:
                    action[key] = re.sub(r" \[r\d+\]$", "", action[key]) + f" [r{rev}]"
                    return f"reword {action['id']}"
    if choice == "rate":
        old = spec.get("rateLimit")
        new = {
            "max": rng.choice([5, 15, 25, 50, 100, 250, 500]) + rev,
            "per": rng.choice(["1m", "5m", "10m", "1h"]),
        }
        if new == old:
            new["max"] += 1
        spec["rateLimit"] = new
        # keep key order: rateLimit before actions
        spec["actions"] = spec.pop("actions")
        return "tune the rate limit"
    if choice == "enabled":
        spec["enabled"] = not spec.get("enabled", True)
        wf.doc["spec"] = {"enabled": spec.pop("enabled"), **spec}
        return "enable" if wf.doc["spec"]["enabled"] else "disable"
    if choice == "trigger":
        trigger = spec["trigger"]
        if trigger["type"] == "schedule" and "cron" in trigger:
            trigger["cron"] = rng.choice([c for c in CRONS if c != trigger["cron"]])
            return "move the schedule"
        if trigger["type"] == "inactivity":
            trigger["after"] = rng.choice([a for a in INACTIVITY if a != trigger["after"]])
            return "change the inactivity period"
        if trigger["type"] in ("record", "inactivity", "email") and "when" not in trigger:
            trigger["when"] = (
                "{{ "
                + rng.choice(CONTEXTS["email" if trigger["type"] == "email" else "record"]["conditions"])
                + " }}"
            )
            return "filter the trigger"
    if choice == "wait":
        for action in actions:
            if action["type"] == "wait":
                action["duration"] = rng.choice([w for w in WAITS if w != action["duration"]])
                return f"change {action['id']}"
    if choice == "label":
        metadata["labels"] = {
            **metadata.get("labels", {}),
            "owner": rng.choice(["alice", "bob", "chandra", "eve"]) + str(rev),
        }
        return "relabel"
    metadata["description"] = re.sub(r" \(rev \d+\)$", "", metadata["description"]) + f" (rev {rev})"
    return "describe better"


# -- the repository --------------------------------------------------------------------------------


@dataclass
class Commit:
    author: tuple[str, str]
    when: int
    message: str
    files: list[tuple[str, bytes | None]]  # path -> content, None deletes


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], check=check, capture_output=True, text=True)


def generate(
    repo: Path, n: int, n_accounts: int, n_commits: int, seed: int
) -> tuple[dict[str, Wf], random.Random, dict[str, int]]:
    """Write the repository; return the workflows at head (key -> Wf), the rng, and counts."""
    rng = random.Random(seed)
    accounts = ACCOUNTS[:n_accounts] + [f"account-{i:03d}" for i in range(len(ACCOUNTS), n_accounts)]
    n_add_commits = 1 if n_commits < 2 else min(n_accounts, max(1, n_commits // 10))
    n_edit_commits = n_commits - n_add_commits
    n_late = n_doomed = min(10, n_edit_commits // 50)  # added / deleted during the edit commits

    # Workflows, round-robin over accounts; the first ~8% of each account are sub-workflows.
    per_account: dict[str, list[Wf]] = {a: [] for a in accounts}
    subs: dict[str, list[str]] = {a: [] for a in accounts}
    total = n + n_doomed
    counters: dict[str, int] = {a: 0 for a in accounts}
    for i in range(total):
        account = accounts[i % n_accounts]
        k = counters[account]
        counters[account] += 1
        sub = k < max(1, (total // n_accounts) * 8 // 100) or k == 0
        entity = rng.choice(ENTITIES)
        plural = entity[:-1] + "ies" if entity.endswith("y") else entity + "s"
        name = f"{rng.choice(VERBS)}-{rng.choice(ADJECTIVES)}-{plural}-{k:04d}"
        wf = make_workflow(rng, account, name, sub, subs[account])
        per_account[account].append(wf)
        if sub:
            subs[account].append(name)
    everything = [wf for a in accounts for wf in per_account[a]]
    leaves = [wf for wf in everything if not wf.sub]
    rng.shuffle(leaves)
    late = leaves[:n_late]
    doomed = leaves[n_late : n_late + n_doomed]
    late_keys = {wf.key for wf in late}

    commits: list[Commit] = []
    when = 1735894800  # 2025-01-03 09:00 UTC
    initial = [wf for wf in everything if wf.key not in late_keys]
    chunk = -(-len(initial) // n_add_commits)
    for start in range(0, len(initial), chunk):
        batch = initial[start : start + chunk]
        names = sorted({wf.account for wf in batch})
        when += rng.randint(600, 7200)
        commits.append(
            Commit(
                rng.choice(AUTHORS),
                when,
                f"Import {len(batch)} workflows ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})",
                [(wf.path, render(wf.doc).encode()) for wf in batch],
            )
        )
    present: dict[str, Wf] = {wf.key: wf for wf in initial}
    specials = rng.sample(range(n_edit_commits), n_late + n_doomed) if n_late + n_doomed else []
    add_at = dict(zip(specials[:n_late], late))
    delete_at = dict(zip(specials[n_late:], doomed))
    doomed_keys = {wf.key for wf in doomed}
    editable = [key for key in present if key not in doomed_keys]
    for index in range(n_edit_commits):
        when += rng.randint(300, 6 * 3600)
        author = rng.choice(AUTHORS)
        if index in add_at:
            wf = add_at[index]
            present[wf.key] = wf
            editable.append(wf.key)
            commits.append(Commit(author, when, f"Add {wf.key}", [(wf.path, render(wf.doc).encode())]))
            continue
        if index in delete_at:
            wf = delete_at[index]
            present.pop(wf.key)
            commits.append(Commit(author, when, f"Remove {wf.key}", [(wf.path, None)]))
            continue
        count = rng.choices([1, 2, 3, 4, 5], [50, 25, 12, 8, 5])[0]
        touched = rng.sample(editable, min(count, len(editable)))
        files, notes = [], []
        for key in touched:
            wf = present[key]
            notes.append(f"{edit_workflow(rng, wf)} in {key}")
            files.append((wf.path, render(wf.doc).encode()))
        message = (
            notes[0].capitalize()
            if len(notes) == 1
            else f"Update {len(notes)} workflows\n\n" + "\n".join(f"- {note}" for note in notes)
        )
        commits.append(Commit(author, when, message, files))

    repo.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "-q", f"--initial-branch={BRANCH}")
    for key, value in {
        "user.name": "Bench Runner",
        "user.email": "bench@example.test",
        "commit.gpgsign": "false",
        "gc.auto": "0",
        "core.autocrlf": "false",
    }.items():
        _git(repo, "config", key, value)
    process = subprocess.Popen(["git", "-C", str(repo), "fast-import", "--quiet"], stdin=subprocess.PIPE)
    assert process.stdin is not None
    out = process.stdin
    for commit in commits:
        name, email = commit.author
        message = commit.message.encode()
        out.write(
            f"commit refs/heads/{BRANCH}\nauthor {name} <{email}> {commit.when} +0000\n"
            f"committer {name} <{email}> {commit.when} +0000\n".encode()
        )
        out.write(b"data %d\n%s\n" % (len(message), message))
        for path, data in commit.files:
            if data is None:
                out.write(f"D {path}\n".encode())
            else:
                out.write(f"M 100644 inline {path}\n".encode())
                out.write(b"data %d\n%s\n" % (len(data), data))
        out.write(b"\n")
    out.close()
    if process.wait() != 0:
        raise SystemExit("git fast-import failed")
    _git(repo, "checkout", "-f", "-q", BRANCH)
    counts = {
        "commits": len(commits),
        "import_commits": n_add_commits,
        "edit_commits": n_edit_commits,
        "added_later": n_late,
        "deleted_later": n_doomed,
        "workflows": len(present),
        "sub_workflows": sum(wf.sub for wf in present.values()),
    }
    return present, rng, counts


def commit_one_edit(repo: Path, rng: random.Random, present: dict[str, Wf]) -> str:
    """Edit one workflow in the working tree and commit it; return its key."""
    key = rng.choice(sorted(present))
    wf = present[key]
    note = edit_workflow(rng, wf)
    (repo / wf.path).write_text(render(wf.doc), encoding="utf-8")
    _git(repo, "add", "--", wf.path)
    _git(repo, "commit", "-q", "--no-verify", "-m", f"{note.capitalize()} in {key}")
    return key


# -- measuring -------------------------------------------------------------------------------------


@dataclass
class Run:
    wall_s: float
    result: dict[str, Any]
    stdout: str
    stderr: str

    @property
    def rss_mib(self) -> float:
        return float(self.result.get("maxrss_kib", 0)) / 1024

    @property
    def exit(self) -> int:
        return int(self.result.get("exit", 2))


def run_measured(work: Path, mode: str, *args: str, env: dict[str, str] | None = None) -> Run:
    result_file = work / f"result-{uuid.uuid4().hex[:8]}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "_run", mode, str(result_file), *args]
    start = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False
    )
    wall = time.perf_counter() - start
    try:
        result = json.loads(result_file.read_text(encoding="utf-8"))
        result_file.unlink()
    except (OSError, ValueError):
        result = {"exit": 2, "error": f"runner died (exit {done.returncode}): {done.stderr.strip()[-2000:]}"}
    if result.get("error"):
        print(f"  !! {mode} {' '.join(args)[:120]}: {result['error']}", file=sys.stderr)
        if result.get("traceback"):
            print(result["traceback"], file=sys.stderr)
    return Run(wall, result, done.stdout, done.stderr)


@dataclass
class Row:
    operation: str
    wall: str
    rss: str
    notes: str


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _sync_notes(run: Run) -> str:
    r = run.result
    parts = [f"exit {run.exit}"]
    if "sync_s" in r:
        parts.append(f"sync() {_ms(r['sync_s'])}")
    if "versions" in r:
        parts.append(
            f"{r['versions']} version(s), {r['ops']} op(s){', full' if r.get('full') else ''}"
            + (f", {r['invalid']} invalid" if r.get("invalid") else "")
        )
    if "import_s" in r:
        parts.append(f"imports {_ms(r['import_s'])}")
    if r.get("mode") == "cli" and "sync_s" in r:
        # store open/migrate, then the CLI's own work on the result (rows, status, printing)
        parts.append(
            f"rest of the command {_ms(float(r['run_s']) - float(r['import_s']) - float(r['sync_s']))}"
        )
    if "open_s" in r:
        parts.append(f"open {_ms(r['open_s'])}")
    return "; ".join(parts)


def show_invalid(repo: Path, data_dir: Path, db: str | None) -> list[str]:
    """The first few not-ready workflows from ``wfctl status --json``."""
    args = [
        "wfctl",
        "--repo",
        str(repo),
        "--data-dir",
        str(data_dir),
        *(["--db", db] if db else []),
        "status",
        "--json",
    ]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    try:
        state = json.loads(done.stdout)
    except ValueError:
        return [f"wfctl status failed: {done.stderr.strip()}"]
    bad = [w for w in state["workflows"] if w["sync"] != "Synced"]
    return [f"{len(bad)} workflow(s) not Synced"] + [
        f"{w['id']}: {w['sync']}: {w['message']}" for w in bad[:8]
    ]


def one_file_series(
    work: Path,
    repo: Path,
    rng: random.Random,
    present: dict[str, Wf],
    repeat: int,
    cli_args: list[str],
    inproc_args: list[str],
    label: str,
    rows: list[Row],
) -> dict[str, float]:
    cli_runs, inproc_runs = [], []
    for _ in range(repeat):
        commit_one_edit(repo, rng, present)
        cli_runs.append(run_measured(work, "cli", *cli_args, "sync"))
    for _ in range(repeat):
        commit_one_edit(repo, rng, present)
        inproc_runs.append(run_measured(work, "inproc", *inproc_args))
    walls = [r.wall_s for r in cli_runs]
    cli_sync = [float(r.result.get("sync_s", 0)) for r in cli_runs]
    versions = sorted({int(r.result.get("versions", -1)) for r in cli_runs + inproc_runs})
    exits = sorted({r.exit for r in cli_runs + inproc_runs})
    rows.append(
        Row(
            f"one-file sync, wfctl sync ({label}), median of {repeat}",
            f"{statistics.median(walls):.3f}",
            f"{max(r.rss_mib for r in cli_runs):.0f}",
            f"max {max(walls):.3f} s; sync() median {_ms(statistics.median(cli_sync))}, max {_ms(max(cli_sync))}; "
            f"imports {_ms(statistics.median(float(r.result.get('import_s', 0)) for r in cli_runs))}; "
            f"versions per run {versions}; exits {exits}",
        )
    )
    inner = [float(r.result.get("sync_s", 0)) for r in inproc_runs]
    rows.append(
        Row(
            f"one-file Reconciler.sync() in-process ({label}), median of {repeat}",
            f"{statistics.median(inner):.3f}",
            f"{max(r.rss_mib for r in inproc_runs):.0f}",
            f"max {_ms(max(inner))}; process wall median {statistics.median(r.wall_s for r in inproc_runs):.2f} s "
            f"(imports {_ms(statistics.median(float(r.result.get('import_s', 0)) for r in inproc_runs))}, "
            f"open store+source {_ms(statistics.median(float(r.result.get('open_s', 0)) for r in inproc_runs))})",
        )
    )
    return {"median": statistics.median(inner), "max": max(inner)}


def pg_schema(base: str) -> tuple[str, Any]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = (
        make_url(base)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url, drop


def print_table(rows: list[Row]) -> None:
    headers = Row("operation", "wall s", "peak RSS MiB", "notes")
    widths = [max(len(getattr(r, f)) for r in [headers, *rows]) for f in ("operation", "wall", "rss")]
    line = f"| {{:<{widths[0]}}} | {{:>{widths[1]}}} | {{:>{widths[2]}}} | {{}}"
    print(line.format(headers.operation, headers.wall, headers.rss, headers.notes))
    print(f"|-{'-' * widths[0]}-|-{'-' * widths[1]}-|-{'-' * widths[2]}-|-{'-' * 5}")
    for r in rows:
        print(line.format(r.operation, r.wall, r.rss, r.notes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--commits", type=int, default=1_000)
    parser.add_argument(
        "--keep", type=Path, help="generate into DIR and keep it (repository, stores, profiles)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="one-file syncs per series (default 5)")
    parser.add_argument("--seed", type=int, default=20260105)
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile runs")
    parser.add_argument(
        "--no-postgres", action="store_true", help="skip PostgreSQL even if WFC_TEST_DATABASE_URL is set"
    )
    args = parser.parse_args()
    if args.workflows < args.accounts or args.accounts < 1 or args.commits < 1:
        parser.error("need --accounts >= 1, --workflows >= --accounts and --commits >= 1")
    if shutil.which("wfctl") is None:
        parser.error("wfctl is not on PATH; run `pip install -e '.[test]'` first")

    if args.keep:
        work = args.keep.resolve()
        if work.exists() and any(work.iterdir()):
            parser.error(f"--keep {work}: the folder is not empty")
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="wfctl-bench-"))
    repo = work / "repo"
    try:
        start = time.perf_counter()
        present, rng, counts = generate(repo, args.workflows, args.accounts, args.commits, args.seed)
        size = subprocess.run(
            ["du", "-sh", str(repo / ".git")], capture_output=True, text=True, check=False
        ).stdout.split()[0]
        lines = [render(wf.doc).count("\n") for wf in present.values()]
        print(
            f"generated {repo} in {time.perf_counter() - start:.1f} s (not measured): {counts['workflows']} workflows "
            f"({counts['sub_workflows']} sub-workflows) in {args.accounts} accounts, {counts['commits']} commits "
            f"({counts['import_commits']} import, {counts['edit_commits']} edit; {counts['added_later']} added and "
            f"{counts['deleted_later']} deleted later), {min(lines)}-{max(lines)} lines per file "
            f"(median {statistics.median(lines):.0f}), .git {size}",
            flush=True,
        )
        triggers = Counter(wf.doc["spec"]["trigger"]["type"] for wf in present.values())
        kinds = Counter(
            a["type"] for wf in present.values() for a in _walk_actions(wf.doc["spec"]["actions"])
        )
        print("  triggers: " + ", ".join(f"{k} {v}" for k, v in triggers.most_common()))
        print("  actions:  " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()), flush=True)

        rows: list[Row] = []
        problems: list[str] = []
        data = work / "data-sqlite"
        base = ["--repo", str(repo), "--data-dir", str(data)]

        print("first sync (SQLite) ...", flush=True)
        first = run_measured(work, "cli", *base, "sync")
        rows.append(
            Row(
                "first sync, wfctl sync (SQLite)",
                f"{first.wall_s:.2f}",
                f"{first.rss_mib:.0f}",
                _sync_notes(first),
            )
        )
        if first.exit != 0:
            problems += [f"first sync (SQLite): exit {first.exit}", *show_invalid(repo, data, None)]
            problems += [line for line in (first.stderr.strip().splitlines())[-5:]]

        print("validate ...", flush=True)
        validate = run_measured(work, "cli", "--repo", str(repo), "validate")
        summary = (validate.stdout.strip().splitlines() or ["(no output)"])[-1]
        rows.append(
            Row(
                "validate, wfctl validate (whole tree)",
                f"{validate.wall_s:.2f}",
                f"{validate.rss_mib:.0f}",
                f"exit {validate.exit}; {summary}",
            )
        )
        if validate.exit != 0:
            problems += [f"validate: exit {validate.exit}", *validate.stdout.strip().splitlines()[:8]]

        print(f"one-file syncs (SQLite) x{args.repeat} x2 ...", flush=True)
        one_sqlite = one_file_series(
            work, repo, rng, present, args.repeat, base, [str(repo), str(data), ""], "SQLite", rows
        )

        print("no-change sync ...", flush=True)
        same = run_measured(work, "cli", *base, "sync")
        rows.append(
            Row(
                "no-change sync, wfctl sync (SQLite)",
                f"{same.wall_s:.3f}",
                f"{same.rss_mib:.0f}",
                _sync_notes(same),
            )
        )
        same_inner = run_measured(work, "inproc", str(repo), str(data), "")
        rows.append(
            Row(
                "no-change Reconciler.sync() in-process (SQLite)",
                f"{float(same_inner.result.get('sync_s', 0)):.3f}",
                f"{same_inner.rss_mib:.0f}",
                _sync_notes(same_inner),
            )
        )

        pg_base = os.environ.get("WFC_TEST_DATABASE_URL")
        if pg_base and not args.no_postgres:
            print("PostgreSQL ...", flush=True)
            url, drop = pg_schema(pg_base)
            try:
                pg_data = work / "data-pg"
                pg_args = ["--repo", str(repo), "--data-dir", str(pg_data), "--db", url]
                pg_first = run_measured(work, "cli", *pg_args, "sync")
                rows.append(
                    Row(
                        "first sync, wfctl sync (PostgreSQL)",
                        f"{pg_first.wall_s:.2f}",
                        f"{pg_first.rss_mib:.0f}",
                        _sync_notes(pg_first),
                    )
                )
                if pg_first.exit != 0:
                    problems += [
                        f"first sync (PostgreSQL): exit {pg_first.exit}",
                        *show_invalid(repo, pg_data, url),
                    ]
                one_file_series(
                    work,
                    repo,
                    rng,
                    present,
                    args.repeat,
                    pg_args,
                    [str(repo), str(pg_data), url],
                    "PostgreSQL",
                    rows,
                )
            finally:
                drop()
        elif not args.no_postgres:
            rows.append(Row("PostgreSQL", "-", "-", "skipped: set WFC_TEST_DATABASE_URL to measure it"))

        print()
        print_table(rows)
        print()
        first_ok = first.exit == 0 and first.wall_s <= 6 and first.rss_mib <= 250
        print(
            f"aim: first sync <= 6 s, <= 250 MB ........ {'MET' if first_ok else 'MISSED'} "
            f"({first.wall_s:.2f} s wall, {first.rss_mib:.0f} MB, sync() {_ms(float(first.result.get('sync_s', 0)))}, "
            f"exit {first.exit})"
        )
        print(
            f"aim: one-file sync <= 30 ms .............. {'MET' if one_sqlite['max'] <= 0.030 else 'MISSED'} "
            f"(Reconciler.sync() median {_ms(one_sqlite['median'])}, max {_ms(one_sqlite['max'])}, SQLite)"
        )
        if problems:
            print("\nproblems:")
            for line in problems:
                print(f"  {line}")

        if not args.no_profile:
            print("\nprofiling (cProfile, in-process, Reconciler.sync() only) ...", flush=True)
            prof_data = work / "data-profile"
            prof_first = run_measured(
                work, "profile", str(repo), str(prof_data), "", str(work / "first-sync.prof")
            )
            commit_one_edit(repo, rng, present)
            prof_one = run_measured(
                work, "profile", str(repo), str(prof_data), "", str(work / "one-file-sync.prof")
            )
            for title, run in (("first sync", prof_first), ("one-file sync", prof_one)):
                r = run.result
                print(
                    f"\n== {title}: {_sync_notes(run)}; profiled total {r.get('total_s')} s "
                    f"(cProfile overhead inflates this) =="
                )
                print("-- top by cumulative time --")
                print(r.get("cumulative", "(no profile)"))
                print("-- top by own time --")
                print(r.get("own", "(no profile)"))
            if args.keep:
                print(
                    f"\nprofiles: {work / 'first-sync.prof'}, {work / 'one-file-sync.prof'} "
                    f"(python -m pstats FILE, or snakeviz)"
                )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"\nkept {work}")


if __name__ == "__main__":
    main()
