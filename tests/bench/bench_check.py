#!/usr/bin/env python3
"""Benchmark of `wfctl check` on a repository of 1,000 workflows with one test case each.

    python tests/bench/bench_check.py [--workflows 1000] [--accounts 10] [--changed 10] [--keep DIR]

1. Generates a git repository with bench_reconcile's generator (every trigger type and action
   kind, sub-workflows called by others) and writes ``<name>.tests.yaml`` next to every workflow:
   one case with a record, payload, inbound mail or call input to suit the trigger, and ``outputs``
   for every ``http.request``. The expectations (status, the first actions that ran, the branch of
   the first ``if``) are what a dry run of that data does, so the repository passes; then commits.
   Generation is not measured.
2. Measures, each in a fresh process: ``wfctl check`` (the console script's entry, whole-process
   wall time), the same check timing only ``run_check()`` in-process, and, after a commit changing
   ``--changed`` workflows, ``wfctl check --base HEAD~1`` both ways.
3. Prints a table against the aim (full check under 15 s) and, with ``--profile``, the top
   functions of an in-process full check by cumulative and by own time.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

_T0 = time.perf_counter()


def _runner(argv: list[str]) -> None:
    """``_run MODE RESULT_FILE REPO [BASE]`` in a fresh process; MODE is cli, inproc or profile."""
    mode, result_file, repo, *rest = argv
    base = rest[0] if rest else None
    result: dict[str, object] = {"mode": mode}
    try:
        if mode == "cli":
            import controller.cli as cli_module

            sys.argv = ["wfctl", "--repo", repo, "check", "--format", "json", "--output", result_file + ".report",
                        *(["--base", base] if base else [])]
            try:
                cli_module.main()
                code: object = 0
            except SystemExit as exit_:
                code = exit_.code
            result["exit"] = code if isinstance(code, int) else (0 if code is None else 2)
            with open(result_file + ".report", encoding="utf-8") as produced:
                report = json.load(produced)
            result["cases"] = len(report["cases"])
            result["passed"] = sum(c["ok"] for c in report["cases"])
            result["changes"] = len(report["changes"])
        else:
            from pathlib import Path

            from controller.check.check import run_check
            from controller.config import Config
            from controller.engine.clock import SystemClock

            result["import_s"] = time.perf_counter() - _T0
            start = time.perf_counter()
            if mode == "profile":
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            report = run_check(Path(repo), "workflows.d", base=base, config=Config(), now=SystemClock().now)
            result["check_s"] = time.perf_counter() - start
            if mode == "profile":
                profiler.disable()
                result.update(_profile_tables(profiler, 18))
            result["cases"] = len(report.cases)
            result["passed"] = sum(c.ok for c in report.cases)
            result["exit"] = 0 if report.ok else 1
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


def _profile_tables(profile: object, top: int) -> dict[str, str]:
    import pstats

    stats = pstats.Stats(profile)  # type: ignore[arg-type]
    prefixes = sorted({p for p in sys.path if p and os.path.isdir(p)}, key=len, reverse=True)

    def where(key: tuple[str, int, str]) -> str:
        filename, line, func = key
        for prefix in prefixes:
            if filename.startswith(prefix + os.sep):
                filename = filename[len(prefix) + 1:]
                break
        return f"{func}  ({filename}:{line})" if filename != "~" else func

    rows = [(ct, tt, nc, key) for key, (_cc, nc, tt, ct, _callers) in stats.stats.items()]  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]

    def render(sorted_rows: list[tuple[float, float, int, tuple[str, int, str]]]) -> str:
        lines = [f"{'cum s':>8} {'cum %':>6} {'own s':>8} {'calls':>9}  function"]
        lines += [f"{ct:8.3f} {100 * ct / total if total else 0:5.1f}% {tt:8.3f} {nc:>9}  {where(key)}"
                  for ct, tt, nc, key in sorted_rows[:top]]
        return "\n".join(lines)

    return {"cumulative": render(sorted(rows, key=lambda r: r[0], reverse=True)),
            "own": render(sorted(rows, key=lambda r: r[1], reverse=True))}


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "_run":
    _runner(sys.argv[2:])
    sys.exit(0)


# --------------------------------------------------------------------------------------------------
# The generating and orchestrating side.
# --------------------------------------------------------------------------------------------------

import argparse
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_reconcile import Wf, _emit_map, _walk_actions, edit_workflow, generate, render

AIM_S = 15.0

RECORD = {"id": "R-1", "title": "Printer on fire", "name": "Dana Scully", "status": "new", "priority": "urgent",
          "stage": "qualified", "company": "Initech", "amount": 25000, "tags": ["vip", "emea"],
          "email": "dana@customer.test", "owner": {"name": "Olga Owner", "email": "olga@acme.test"},
          "assignee": {"name": "Bob", "email": "bob@acme.test"}, "reporter": {"email": "carol@customer.test"}}
PAYLOAD = {"id": "evt-9", "name": "Dana Scully", "email": "dana@customer.test", "message": "I would like a demo",
           "severity": "critical", "service": "db", "alert": "Disk full", "reply_to": "ops@customer.test",
           "score": 0.9, "kind": "signup"}
MAIL = {"from": "pat@partner.test", "subject": "Refund for invoice 2024-117",
        "text": "Urgent: I was charged twice."}
INPUT = {"subject": "Needs a manager", "link": "https://app.example.test/x/1", "id": "R-1",
         "summary": "Disk full", "email": "managers@example.test", "urgent": True}
ANSWER = {"status": 200, "json": {"id": "ext-1", "count": 3, "items": [1, 2], "status": "ok",
                                  "url": "https://ext.example.test/1", "changes": [{"id": 1}], "deals": [{"id": 2}]}}


def case_data(wf: Wf) -> dict[str, Any]:
    """The inputs of the one case of ``wf``: what its trigger gives, and answers for its HTTP calls."""
    trigger = wf.doc["spec"]["trigger"]
    case: dict[str, Any] = {"name": f"{wf.name} does its job"}
    if wf.sub:
        case["input"] = INPUT
    elif trigger["type"] in ("record", "inactivity", "manual"):
        case["entity"] = RECORD
    elif trigger["type"] == "webhook":
        case["payload"] = PAYLOAD
    elif trigger["type"] == "email":
        case["email"] = MAIL
    http = [a["id"] for a in _walk_actions(wf.doc["spec"]["actions"]) if a["type"] == "http.request"]
    if http:
        case["outputs"] = {action_id: ANSWER for action_id in http}
    return case


def expectation(view: dict[str, Any]) -> dict[str, Any]:
    """What a case expects, from what the dry run of its data did."""
    if not view["started"]:
        return {"status": "not_started"}
    run = view["dry_run"]
    expect: dict[str, Any] = {"status": run["status"], "ran": [s["action_id"] for s in run["steps"][:3]]}
    branch = next((s for s in run["steps"] if s.get("branch")), None)
    if branch is not None:
        expect["branches"] = {branch["action_id"]: branch["branch"]}
    if run["error"]:
        expect["error"] = {"matches": "step "}
    effect = next((i for i in run["intents"] if i["kind"] == "email.send"), None)
    if effect is not None:
        expect["effects"] = {effect["action_id"]: {"mailbox": effect["mailbox"]}}
    return expect


def tests_text(cases: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    _emit_map({"cases": cases}, 0, lines)
    return "\n".join(lines) + "\n"


def tests_path(repo: Path, wf: Wf) -> Path:
    return repo / wf.path.replace(".yaml", ".tests.yaml")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def write_tests(repo: Path, present: dict[str, Wf]) -> dict[str, int]:
    """Tests for every workflow, with expectations from an in-process dry run of their data."""
    from controller.check.check import run_check
    from controller.config import Config
    from controller.engine.clock import SystemClock

    data = {key: case_data(wf) for key, wf in present.items()}
    for key, wf in present.items():
        tests_path(repo, wf).write_text(tests_text([data[key]]))
    report = run_check(repo, "workflows.d", base=None, config=Config(), now=SystemClock().now)
    views = {c.workflow: c.view() for c in report.cases}
    statuses: dict[str, int] = {}
    for key, wf in present.items():
        expect = expectation(views[key])
        statuses[expect["status"]] = statuses.get(expect["status"], 0) + 1
        tests_path(repo, wf).write_text(tests_text([{**data[key], "expect": expect}]))
    return statuses


@dataclass
class Run:
    wall: float
    result: dict[str, Any]


def run_measured(work: Path, mode: str, repo: Path, base: str | None = None) -> Run:
    result_file = work / f"result-{uuid.uuid4().hex[:8]}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "_run", mode, str(result_file), str(repo),
               *([base] if base else [])]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=repo)
    wall = time.perf_counter() - start
    try:
        result = json.loads(result_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        result = {"exit": 2, "error": f"runner died (exit {done.returncode}): {done.stderr.strip()[-2000:]}"}
    if result.get("error"):
        print(f"  !! {mode}: {result['error']}\n{result.get('traceback', '')}", file=sys.stderr)
    return Run(wall, result)


def row(operation: str, run: Run, inproc: Run | None = None) -> list[str]:
    r = run.result
    check_s = f"{inproc.result['check_s']:.2f}" if inproc and "check_s" in inproc.result else "-"
    cases = f"{r.get('passed', '?')}/{r.get('cases', '?')}"
    notes = f"exit {r.get('exit')}" + (f", {r['changes']} change(s)" if "changes" in r else "")
    if inproc is not None:
        notes += f"; in-process exit {inproc.result.get('exit')}, imports {inproc.result.get('import_s', 0):.2f} s"
    return [operation, f"{run.wall:.2f}", check_s, cases, f"{r.get('maxrss_kib', 0) / 1024:.0f}", notes]


def print_table(rows: list[list[str]]) -> None:
    headers = ["operation", "wall s (process)", "run_check() s", "cases passed", "peak RSS MiB", "notes"]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    for index, values in enumerate([headers, *rows]):
        print("| " + " | ".join(v.ljust(w) if i in (0, 5) else v.rjust(w)
                                for i, (v, w) in enumerate(zip(values, widths))) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--changed", type=int, default=10, help="workflows changed for --base HEAD~1")
    parser.add_argument("--seed", type=int, default=20260105)
    parser.add_argument("--keep", type=Path, help="generate into DIR and keep it")
    parser.add_argument("--profile", action="store_true", help="also profile an in-process full check")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="wfctl-bench-check-"))
    repo = work / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    started = time.perf_counter()
    present, rng, counts = generate(repo, args.workflows, args.accounts, 1, args.seed)
    statuses = write_tests(repo, present)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"Tests for {len(present)} workflows")
    print(f"generated {counts['workflows']} workflows ({counts['sub_workflows']} sub-workflows) in "
          f"{args.accounts} accounts, one case each (expected: "
          + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + f") in {time.perf_counter() - started:.1f} s")

    rows = [row("wfctl check (all)", run_measured(work, "cli", repo), run_measured(work, "inproc", repo))]
    changed = rng.sample(sorted(k for k, wf in present.items() if not wf.sub), args.changed)
    for key in changed:
        wf = present[key]
        edit_workflow(rng, wf)
        (repo / wf.path).write_text(render(wf.doc))
    write_tests(repo, {key: present[key] for key in changed})
    git(repo, "commit", "-q", "-am", f"Change {len(changed)} workflows")
    rows.append(row(f"wfctl check --base HEAD~1 ({args.changed} changed)", run_measured(work, "cli", repo, "HEAD~1"),
                    run_measured(work, "inproc", repo, "HEAD~1")))
    print()
    print_table(rows)
    full = float(rows[0][1])
    print(f"\naim: full check under {AIM_S:.0f} s: {'met' if full < AIM_S else 'MISSED'} ({full:.2f} s)")
    if args.profile:
        profile = run_measured(work, "profile", repo).result
        print("\nprofile of run_check() (all), by cumulative time:\n" + profile.get("cumulative", ""))
        print("\nby own time:\n" + profile.get("own", ""))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"\nkept {work}")


if __name__ == "__main__":
    main()
