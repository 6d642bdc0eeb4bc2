"""`wfctl check`: what CI runs on a pull request.

1. Validate the whole tree as it is checked out (the same loader and rules as the controller).
2. The plan against ``--base``: added, changed, removed and restored workflows with their
   field-level changes (restored: the new content equals an earlier revision of the file).
3. Dry-run every added, changed or restored workflow, and every workflow whose test file changed:
   its test cases, or one synthetic case when it has none.
4. Optionally ask a live controller whether a restore would be held back right now.
5. Optionally the impact preview (``--replay``): the live controller replays the recent real events of each
   workflow step 3 dry-runs through its applied version and the proposed file, and answers what would
   change for customers (:mod:`controller.check.replay`); the check fails when the proposed version fails on
   events the applied one handled.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from git import GitCommandError, Repo

from controller.check.cases import parse_tests, read_tests, tests_path_for
from controller.check.runner import CaseResult, run_case, synthetic_case
from controller.config import Config
from controller.engine.directory import Directory
from controller.engine.dryrun import DryRunner, SyntheticDirectory
from controller.engine.templating import Templates
from controller.errors import DefinitionError, NotFoundError, Problem, SourceError, UsageError, WfcError
from controller.outbound import OutboundPolicy
from controller.reconcile.diff import FieldChange, field_changes
from controller.reconcile.directories import NOT_CHECKED, Directories, FileDirectory
from controller.reconcile.loader import Loaded, classify, load, position
from controller.reconcile.validate import validate_tree
from controller.source import GitSource

HISTORY_DEPTH = 50  # earlier revisions of a file searched for a restore

BlockedLookup = Callable[[str], list[int]]  # workflow key -> executions in flight on a live controller


@dataclass(frozen=True)
class ReplayAsk:
    """``--replay``: what to ask the live controller's impact preview for each workflow dry-run."""

    fetch: Callable[..., dict[str, Any]]  # ControllerClient.replay
    limit: int
    since: str | None = None
    like: str | None = None  # for a workflow with no events of its own


@dataclass
class WorkflowChange:
    id: str
    path: str
    change: str  # added | changed | removed | restored | tests
    changes: list[FieldChange] = field(default_factory=list)
    restored_from: str | None = None  # the earlier commit whose content this equals

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "change": self.change, "changes": self.changes,
                "restored_from": self.restored_from}


@dataclass
class CheckReport:
    files: int = 0
    base: str | None = None
    problems: list[Problem] = field(default_factory=list)
    changes: list[WorkflowChange] = field(default_factory=list)
    cases: list[CaseResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (path, message)
    replays: list[dict[str, Any]] = field(default_factory=list)  # the controller's reports, with "path"

    @property
    def regressions(self) -> int:
        """Events the applied version handled and the proposed one would fail on (impact preview)."""
        return sum(int(r["totals"]["newly_failing"]) for r in self.replays)

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.ok for c in self.cases) and not self.regressions


def run_check(top: Path, root: str, *, base: str | None, config: Config, now: Callable[[], datetime],
              directory: Directory | None = None, in_flight: BlockedLookup | None = None,
              directories: Directories | None = None, replay: ReplayAsk | None = None) -> CheckReport:
    """``directories`` (from ``--directory``): references are checked as the controller checks them, and
    dry runs see those entries (anything else they name is made up)."""
    top = top.resolve()
    validation = validate_tree(top, root, directories=directories)
    report = CheckReport(files=validation.files, base=base, problems=list(validation.problems))
    loaded = validation.loaded
    if base is not None:
        report.changes = plan_against(top, root, base, loaded)
        selected = {c.id for c in report.changes if c.change != "removed"}
    else:
        selected = set(loaded)
    if directories is None:
        report.notes.append(NOT_CHECKED)
    directory = directory or SyntheticDirectory(FileDirectory(directories) if directories else None)
    templates = Templates()  # one compile cache for the whole check: called workflows run for every caller
    for key in sorted(selected):
        account = key.split("/", 1)[0]
        if key not in loaded or not loaded[key].ok:
            continue
        if not config.enabled("workflow_dry_run", account):
            report.notes.append(f"{key}: not dry-run: dry run is disabled for account {account} "
                                f"(feature flag workflow_dry_run)")
            continue
        report.cases += _dry_run(top, key, loaded, directory, templates, now, report, config.outbound(account))
    if replay is not None:
        proposed = {key: loaded[key] for key in sorted(selected) if key in loaded and loaded[key].ok}
        for key, target in proposed.items():
            if config.enabled("workflow_dry_run", target.where.account):
                _replay(replay, target, _proposed_calls(target, proposed), report)
    if in_flight is not None:
        for change in report.changes:
            if change.change == "restored" and (busy := in_flight(change.id)):
                ids = ", ".join(str(i) for i in busy)
                message = (f"{change.id}: the controller would hold this restore back now: "
                           f"{len(busy)} execution(s) in flight ({ids})")
                report.warnings.append((change.path, message))
    return report


def _dry_run(top: Path, key: str, loaded: Mapping[str, Loaded], directory: Directory, templates: Templates,
             now: Callable[[], datetime], report: CheckReport, outbound: OutboundPolicy) -> list[CaseResult]:
    account, name = key.split("/", 1)
    target = loaded[key]

    def definitions(called: str) -> Mapping[str, Any] | None:
        found = loaded.get(f"{account}/{called}")
        return found.content if found is not None and found.ok else None

    runner = DryRunner(account=account, directory=directory, definitions=definitions, now=now, templates=templates,
                       outbound=outbound)
    tests_path = tests_path_for(target.where.path)
    tests_file = top / tests_path
    if not tests_file.exists():
        case, record = synthetic_case(target.content)
        result = run_case(runner, name, target.content, case, record=record, synthetic=True)
        result.path = target.where.path
        return [result]
    try:
        text = read_tests(top, tests_file, tests_path)
        cases = parse_tests(text, tests_path).cases
    except DefinitionError as e:
        report.problems += e.problems
        return []
    results = [run_case(runner, name, target.content, case) for case in cases]
    for index, result in enumerate(results):
        result.path = tests_path
        if not result.ok:  # placed by the round-trip loader, which is slow: failures only
            result.line = position(text, ("cases", index))[0]
    return results


def _proposed_calls(target: Loaded, proposed: Mapping[str, Loaded]) -> dict[str, str]:
    """The proposed files of the changed workflows ``target`` calls, directly or through others, by name."""
    account, found = target.where.account, {}
    waiting = set(target.workflow.calls()) if target.workflow is not None else set()
    while waiting:
        other = proposed.get(f"{account}/{waiting.pop()}")
        if other is not None and other.key != target.key and other.where.name not in found:
            found[other.where.name] = other.source_text
            waiting |= other.workflow.calls() if other.workflow is not None else set()
    return found


def _replay(ask: ReplayAsk, target: Loaded, calls: dict[str, str], report: CheckReport) -> None:
    """The controller's impact preview of one proposed file (``calls``: the changed workflows it calls);
    another workflow's events when it has none."""
    path = target.where.path
    try:
        found = ask.fetch(target.key, target.source_text, path=path, limit=ask.limit, since=ask.since,
                          calls=calls)
    except NotFoundError as e:  # another account than the token's: the controller shows it nothing
        report.notes.append(f"{target.key}: not replayed: {e}")
        return
    if found["events"] == 0 and ask.like and ask.like != target.key:
        try:
            found = ask.fetch(target.key, target.source_text, path=path, limit=ask.limit, since=ask.since,
                              like=ask.like, calls=calls)
        except WfcError as e:  # not there, another account, another trigger: the rest of the check goes on
            report.notes.append(f"{target.key}: not replayed with the events of {ask.like}: {e}")
            return
        found["like"] = ask.like
    if found["events"] == 0:
        hint = "" if ask.like else "; pass --replay-like ACCOUNT/NAME to replay another workflow's"
        report.notes.append(f"{target.key}: no recent events to replay{hint}")
    report.replays.append({**found, "path": path})


def plan_against(top: Path, root: str, base: str, loaded: Mapping[str, Loaded]) -> list[WorkflowChange]:
    """What merging the checked-out tree would change, compared with commit ``base``."""
    try:
        source = GitSource(str(top), root=root, data_dir=top / ".wfctl")
    except SourceError as e:
        raise UsageError(f"--base needs a git checkout: {e}") from None
    with source:
        try:
            base_sha = source.commit(base).sha
        except SourceError:
            raise UsageError(f"--base {base!r} is not a commit of {top}; fetch it first "
                             f"(e.g. git fetch origin {base})") from None
        entries = source.entries(base_sha)
        before = {w.key: (w, entries[w.path].sha) for w in (classify(p, root) for p in entries) if w is not None}
        changes: list[WorkflowChange] = []
        for key, now_loaded in sorted(loaded.items()):
            path = now_loaded.where.path
            if key not in before:
                changes.append(WorkflowChange(key, path, "added", field_changes({}, now_loaded.content)))
                continue
            where, blob = before[key]
            tests_changed = _tests_changed(top, source, entries, path)
            if _blob_sha(now_loaded.source_text) == blob and where.path == path:
                if tests_changed:
                    changes.append(WorkflowChange(key, path, "tests"))
                continue
            old = load(where, source.read_blob(blob))
            if old.ok and now_loaded.ok and old.content_hash == now_loaded.content_hash:
                if tests_changed:
                    changes.append(WorkflowChange(key, path, "tests"))
                continue
            diff = field_changes(old.content if old.ok else {}, now_loaded.content if now_loaded.ok else {})
            restored = _restored_from(top, source, base_sha, where, now_loaded) if now_loaded.ok else None
            changes.append(WorkflowChange(key, path, "restored" if restored else "changed", diff, restored))
        for key, (where, _) in sorted(before.items()):
            if key not in loaded:
                changes.append(WorkflowChange(key, where.path, "removed"))
        return changes


def _tests_changed(top: Path, source: GitSource, entries: Mapping[str, Any], path: str) -> bool:
    tests = tests_path_for(path)
    file = top / tests
    now_sha = _blob_sha(_blob_of(file)) if file.is_symlink() or file.exists() else None
    base_entry = entries.get(tests)
    return now_sha != (base_entry.sha if base_entry is not None else None)


def _restored_from(top: Path, source: GitSource, base_sha: str, where: Any, now_loaded: Loaded) -> str | None:
    """The newest earlier commit (before base's version) whose file content equals the new one."""
    try:
        shas = Repo(top).git.log("--format=%H", f"-n{HISTORY_DEPTH}", base_sha, "--", where.path).split()
    except GitCommandError:
        return None
    for sha in shas[1:]:  # the first is the version at base, which this change replaces
        try:
            earlier = load(where, source.read(sha, where.path))
        except SourceError:
            continue  # the file did not exist there (deleted, then re-added)
        if earlier.ok and earlier.content_hash == now_loaded.content_hash:
            return sha
    return None


def _blob_of(file: Path) -> bytes:
    """What git would store for a working-tree file: its bytes, or for a symlink its target (never followed)."""
    return os.readlink(file).encode("utf-8", "surrogateescape") if file.is_symlink() else file.read_bytes()


def _blob_sha(text: str | bytes) -> str:
    """git's object id of a file with this text, to skip files that did not change at all."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()

