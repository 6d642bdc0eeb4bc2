"""`wfctl check` output: human text, JSON, GitHub annotations, JUnit XML, Markdown (a pull-request comment)."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree as ET

from controller.check.check import CheckReport
from controller.check.replay import REGRESSION
from controller.check.runner import CaseResult

FORMATS = ("text", "json", "github", "junit", "markdown")
CELL = 80  # the longest value shown in a Markdown table cell
MARKER = "<!-- wfctl check -->"  # the first line of the Markdown report: CI finds its earlier comment by it


def render(report: CheckReport, fmt: str) -> str:
    return {"text": text, "json": as_json, "github": github, "junit": junit, "markdown": markdown}[fmt](report)


def as_json(report: CheckReport) -> str:
    data: dict[str, Any] = {
        "ok": report.ok, "files": report.files, "base": report.base,
        "problems": [{"path": p.path, "line": p.line, "column": p.column, "field": p.field, "message": p.message}
                     for p in report.problems],
        "changes": [c.view() for c in report.changes],
        "cases": [c.view() for c in report.cases],
        "notes": report.notes,
        "warnings": [{"path": path, "message": message} for path, message in report.warnings],
        "replays": report.replays,
    }
    return json.dumps(data, indent=2, default=str) + "\n"


def text(report: CheckReport) -> str:
    lines = [f"validate: {report.files} file(s), {len(report.problems)} problem(s)"]
    lines += [f"  {p}" for p in report.problems]
    if report.base is not None:
        lines.append(f"plan against {report.base}: {len(report.changes)} change(s)")
        for change in report.changes:
            since = f" (equals {change.restored_from[:12]})" if change.restored_from else ""
            lines.append(f"  {change.change:<9} {change.id}{since}")
            lines += [f"      {c['path']}: {json.dumps(c['old'])} -> {json.dumps(c['new'])}" for c in change.changes[:20]]
    passed = sum(c.ok for c in report.cases)
    lines.append(f"dry run: {passed}/{len(report.cases)} case(s) passed")
    for case in report.cases:
        lines.append(f"  {'ok  ' if case.ok else 'FAIL'} {case.workflow} :: {case.name}" + _summary(case))
        lines += [f"       {m}" for m in case.mismatches]
        if not case.ok and case.result is not None:
            lines += [f"       - {s['action_id']}: {s['status']}" + (f" ({s['intent']})" if s.get("intent") else "")
                      + (f" {s['error']}" if s.get("error") else "") for s in case.result.steps]
    for replay in report.replays:
        lines.append(f"impact preview of {replay['workflow']}: {_plain(replay['headline'])}" + _cut_short(replay))
        for group in replay["groups"]:
            lines.append(f"  {group['count']:>5}  {_plain(group['summary'])}")
            lines += [f"         e.g. {_example(e)}" for e in group["examples"]]
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"warning: {message}" for _, message in report.warnings]
    lines.append("check passed" if report.ok else "check FAILED" + _regressions(report))
    return "\n".join(lines) + "\n"


def _cut_short(replay: dict[str, Any]) -> str:
    if not replay["truncated"]:
        return ""
    return (f" (the controller's time budget ran out: {replay['replayed']} of {replay['events']} events replayed; "
            f"configuration replay.budget)")


def _regressions(report: CheckReport) -> str:
    count = report.regressions
    return f": the proposed version fails on {count} event(s) the applied one handled" if count else ""


def _example(example: dict[str, Any]) -> str:
    """One example event of a group of differences; values only when the controller sent them."""
    where = example["event"] + (f" ({_plain(example['record'])})" if example.get("record") else "")
    if "reason" in example:
        return f"{where}: {_plain(example['reason'])}"
    if "before" not in example:
        return where
    return f"{where}: {_value(example['before'])} -> {_value(example['after'])}"


def _value(value: Any, limit: int = CELL) -> str:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = ", ".join(value)  # recipients
    shown = "-" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)
    shown = _plain(shown)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _summary(case: CaseResult) -> str:
    if not case.started:
        return " (not started)"
    if case.result is None:
        return ""
    return f" ({len(case.result.steps)} step(s), {len(case.result.intents)} intended effect(s))"


def github(report: CheckReport) -> str:
    lines = []
    for p in report.problems:
        what = f"{p.field}: {p.message}" if p.field else p.message
        lines.append(f"::error file={p.path},line={max(p.line, 1)},col={max(p.column, 1)}::{_escape(what)}")
    for case in report.cases:
        if not case.ok:
            failures = "; ".join(str(m) for m in case.mismatches)
            message = _escape(f"{case.workflow} case {case.name!r}: {failures}")
            lines.append(f"::error file={case.path or case.workflow},line={case.line},col=1::{message}")
    for path, message in report.warnings:
        lines.append(f"::warning file={path},line=1,col=1::{_escape(message)}")
    for replay in report.replays:
        for group in replay["groups"]:
            level = "error" if group["kind"] == REGRESSION else "warning"
            message = f"{replay['workflow']}: {group['count']} of {replay['replayed']} recent event(s) {group['summary']}"
            lines.append(f"::{level} file={replay['path']},line=1,col=1::{_escape(message)}")
    lines.append(f"check {'passed' if report.ok else 'failed'}: {len(report.problems)} problem(s), "
                 f"{sum(not c.ok for c in report.cases)} failed case(s) of {len(report.cases)}"
                 + (f", {report.regressions} event(s) newly failing in the impact preview" if report.replays else ""))
    return "\n".join(lines) + "\n"


def _escape(message: str) -> str:
    """GitHub's workflow-command escaping for message text."""
    return message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def junit(report: CheckReport) -> str:
    suites = ET.Element("testsuites", name="wfctl check")
    validate = ET.SubElement(suites, "testsuite", name="validate")
    by_file: dict[str, list[str]] = {}
    for p in report.problems:
        by_file.setdefault(p.path, []).append(str(p))
    for path, problems in sorted(by_file.items()):
        case = ET.SubElement(validate, "testcase", classname="validate", name=path)
        ET.SubElement(case, "failure", message=problems[0]).text = "\n".join(problems)
    if not by_file:
        ET.SubElement(validate, "testcase", classname="validate", name=f"{report.files} file(s)")
    validate.set("tests", str(max(len(by_file), 1)))
    validate.set("failures", str(len(by_file)))
    dry = ET.SubElement(suites, "testsuite", name="dry-run", tests=str(len(report.cases)),
                        failures=str(sum(not c.ok for c in report.cases)))
    for result in report.cases:
        case = ET.SubElement(dry, "testcase", classname=result.workflow, name=result.name)
        if result.path:
            case.set("file", result.path)
        if not result.ok:
            case.set("line", str(result.line))  # the failing case's place in its file
        if not result.ok:
            ET.SubElement(case, "failure", message=str(result.mismatches[0])).text = "\n".join(
                str(m) for m in result.mismatches)
        if result.result is not None:
            ET.SubElement(case, "system-out").text = "\n".join(
                f"{s['action_id']}: {s['status']}" + (f" - {s['intent']}" if s.get("intent") else "")
                for s in result.result.steps)
    if report.replays:
        replays = ET.SubElement(suites, "testsuite", name="impact-preview", tests=str(len(report.replays)),
                                failures=str(sum(bool(r["totals"]["newly_failing"]) for r in report.replays)))
        for replay in report.replays:
            case = ET.SubElement(replays, "testcase", classname=replay["workflow"], name="replay", file=replay["path"])
            if replay["totals"]["newly_failing"]:
                ET.SubElement(case, "failure", message=replay["headline"])
            ET.SubElement(case, "system-out").text = "\n".join(
                [replay["headline"], *(f"{g['count']} {g['summary']}" for g in replay["groups"])])
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def markdown(report: CheckReport) -> str:
    """The report as a pull-request comment: the verdict, then what changes for customers, then the details."""
    lines = [MARKER, f"### wfctl check {'passed' if report.ok else 'FAILED'}" + _regressions(report), ""]
    for replay in report.replays:
        lines += [f"**Impact preview of {_cell(replay['workflow'])}**: {_cell(replay['headline'], 400)}"
                  + _cut_short(replay), ""]
        if replay["groups"]:
            lines += ["| events | what would change | examples |", "|---:|---|---|"]
            lines += [f"| {g['count']} | {_cell(g['summary'], 200)} | "
                      f"{'<br>'.join(_cell(_example(e), 2 * CELL) for e in g['examples'])} |" for g in replay["groups"]]
            lines.append("")
        if not replay["values"]:
            lines += ["<sub>Field paths and counts only: the token has no `workflow.replay`.</sub>", ""]
    lines.append(f"- validate: {report.files} file(s), {len(report.problems)} problem(s)")
    lines += [f"  - {_cell(str(p), 200)}" for p in report.problems]
    if report.base is not None:
        lines.append(f"- plan against `{report.base}`: {len(report.changes)} change(s)")
        lines += [f"  - {c.change} {_cell(c.id)}" for c in report.changes]
    lines.append(f"- dry run: {sum(c.ok for c in report.cases)}/{len(report.cases)} case(s) passed")
    lines += [f"  - FAIL {_cell(c.workflow)} :: {_cell(c.name)}: {_cell('; '.join(str(m) for m in c.mismatches), 300)}"
              for c in report.cases if not c.ok]
    lines += [f"- note: {_cell(n, 300)}" for n in report.notes]
    lines += [f"- warning: {_cell(message, 300)}" for _, message in report.warnings]
    return "\n".join(lines) + "\n"


def _cell(value: str, limit: int = CELL) -> str:
    """Text that stays text in a Markdown table cell of a comment, whoever wrote it (a record's value may): the
    marks that make links, images, emphasis, code, HTML or a cell break escaped, and a word joiner after ``@``,
    ``://`` and ``www`` so that GitHub makes no mention or link of it."""
    shown = value if len(value) <= limit else value[: limit - 1] + "…"
    shown = "".join(f"\\{c}" if c in _MARKS else c for c in _plain(shown))
    return shown.replace("@", "@\u2060").replace("://", ":\u2060//").replace("www.", "www\u2060.")


_MARKS = frozenset("\\`*_[]<>|~&")


def _plain(value: str) -> str:
    """``value`` with its control characters written out (``\\n``): one line, and no terminal or CI command."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in value)
