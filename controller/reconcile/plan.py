"""Planning: desired (git, commit by commit) vs applied (store) -> the operations of one pass.

Pure: no git, no SQL. The reconciler feeds a :class:`Walk` the applied state of the accounts a
pass touches, then one :class:`Step` per new commit on the first-parent chain (or one step with
the whole tree on a first sync or after a force-push), and takes the resulting :class:`Plan`.
Each step that changes a workflow's normalized definition yields exactly one new version; an
invalid file keeps its workflow at the last good version; cross-file rules (call targets exist,
no call cycles) are judged per account on the state at that commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from controller.errors import Problem
from controller.model.entries import DirectoryEntry
from controller.reconcile.diff import FieldChange, field_changes
from controller.reconcile.loader import Loaded
from controller.reconcile.rules import call_problems, outbound_problems, ref_problems
from controller.source import CommitInfo

Sync = Literal["Synced", "Invalid", "Blocked"]
Action = Literal["create", "update", "restore", "delete", "invalid", "blocked"]
VERSION_ACTIONS: dict[str, Action] = {"created": "create", "updated": "update", "restored": "restore"}


@dataclass(frozen=True)
class AppliedWorkflow:
    """One workflow as the store has it (also a deleted one: its version count goes on)."""

    key: str
    path: str
    version: int = 0  # the newest version number; active only while content_hash is set
    content_hash: str | None = None
    content: dict[str, Any] | None = None
    calls: tuple[str, ...] = ()
    deleted: bool = False
    sync: Sync = "Synced"
    message: str = ""
    enabled: bool = False
    trigger_type: str | None = None
    last_applied_commit: str | None = None
    blocked_commit: str | None = None  # a restore held back at this commit; later commits queue behind
    # content_hash -> newest version with that content, for restore detection.
    hashes: Mapping[str, int] = field(default_factory=dict)

    @property
    def account(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split("/", 1)[1]

    @property
    def present(self) -> bool:
        """The file exists in git (valid or not)."""
        return not self.deleted


@dataclass(frozen=True)
class Step:
    """What one commit changed: workflow key -> its file loaded at that commit, or None (gone).

    ``attribution`` names, per key, the commit a version should carry when it is not ``commit``
    (a first sync attributes each workflow to the last commit that touched its file).
    """

    commit: CommitInfo
    files: Mapping[str, Loaded | None]
    attribution: Mapping[str, CommitInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionOp:
    key: str
    path: str
    version: int
    action: Literal["created", "updated", "restored"]
    commit: CommitInfo
    content: dict[str, Any]
    content_hash: str
    source_text: str
    restored_from: int | None
    changes: list[FieldChange]
    enabled: bool
    trigger_type: str
    calls: tuple[str, ...]


@dataclass(frozen=True)
class DeleteOp:
    key: str
    path: str
    version: int
    commit: CommitInfo


@dataclass(frozen=True)
class InvalidOp:
    key: str
    path: str
    version: int
    commit: CommitInfo
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class BlockedOp:
    """A restore held back while the workflow has executions running or waiting."""

    key: str
    path: str
    version: int
    commit: CommitInfo
    restored_from: int
    executions: tuple[int, ...]
    new: bool  # first time this commit is held back (the audit records it once)

    @property
    def message(self) -> str:
        ids = ", ".join(str(i) for i in self.executions)
        return (f"restore to version {self.restored_from} (commit {self.commit.sha[:12]}) waits for "
                f"{len(self.executions)} execution(s) in flight: {ids}; it applies when they finish "
                f"(or cancel them: wfctl executions cancel ID)")


Op = VersionOp | DeleteOp | InvalidOp | BlockedOp


@dataclass(frozen=True)
class Plan:
    """The operations of one pass, in commit order, and each touched workflow's end state."""

    base: str | None
    head: CommitInfo
    full: bool
    ops: tuple[Op, ...]
    outcome: Mapping[str, AppliedWorkflow]
    attempted: Mapping[str, str]  # key -> the newest commit that touched it in this pass
    invalid: Mapping[str, tuple[Problem, ...]]

    @property
    def empty(self) -> bool:
        """Nothing new since the last pass."""
        return not self.ops and not self.attempted

    def actions(self) -> dict[str, Action]:
        """Per workflow, what the pass does: its last operation decides (`wfctl plan`)."""
        result: dict[str, Action] = {}
        for op in self.ops:
            if isinstance(op, VersionOp):
                result[op.key] = VERSION_ACTIONS[op.action]
            elif isinstance(op, DeleteOp):
                result[op.key] = "delete"
            elif isinstance(op, BlockedOp):
                result[op.key] = "blocked"
        for key in self.invalid:
            result[key] = "invalid"
        return result



class Walk:
    """Folds steps over the applied state; ``plan()`` gives the result. Never touches I/O."""

    def __init__(self, applied: Mapping[str, AppliedWorkflow], *, base: str | None, head: CommitInfo, full: bool,
                 directories: Mapping[str, Mapping[str, DirectoryEntry]] | None = None,
                 busy: Mapping[str, Sequence[int]] | None = None):
        self._state: dict[str, AppliedWorkflow] = {w.key: w for w in applied.values()}
        self._accounts: dict[str, set[str]] = {}  # account -> keys, so a step reads only its accounts
        for key in self._state:
            self._index(key)
        self._problems: dict[str, tuple[Problem, ...]] = {}
        self._attempted: dict[str, str] = {}
        self._ops: list[Op] = []
        self._base = base
        self._full = full
        self._head = head
        self._directories = directories or {}  # accounts with a loaded directory: references are checked
        self._busy = busy or {}  # key -> running or waiting execution ids: restores of these wait
        self._held: set[str] = set()  # keys whose restore is held back in this walk

    def dependents(self, removed_or_added: Mapping[str, str]) -> set[str]:
        """Keys whose validity may change with a step that adds or removes these workflows.

        ``removed_or_added`` maps key -> "added" | "removed". Callers of a removed workflow must be
        judged again (their target is gone), and so must every invalid workflow of an account in
        which a workflow appeared (a missing target may now exist).
        """
        affected: set[str] = set()
        for key, change in removed_or_added.items():
            account, name = key.split("/", 1)
            for other in (self._state[k] for k in self._accounts.get(account, ())):
                if other.key == key or not other.present:
                    continue
                if change == "removed" and name in other.calls:
                    affected.add(other.key)
                if change == "added" and (other.sync == "Invalid" or other.key in self._problems):
                    affected.add(other.key)
        return affected

    def _index(self, key: str) -> None:
        self._accounts.setdefault(key.split("/", 1)[0], set()).add(key)

    def known(self, key: str) -> AppliedWorkflow | None:
        return self._state.get(key)

    def step(self, step: Step) -> None:
        by_account: dict[str, dict[str, Loaded | None]] = {}  # one pass over the files, not one per account
        for key, loaded in step.files.items():
            by_account.setdefault(key.split("/", 1)[0], {})[key] = loaded
        for account in sorted(by_account):
            self._step_account(account, step, by_account[account])

    def _step_account(self, account: str, step: Step, files: Mapping[str, Loaded | None]) -> None:
        """The step's ``files`` of this ``account``, judged on the account's state at that commit."""
        members = [self._state[k] for k in self._accounts.get(account, ())]
        present = {w.name: w for w in members if w.present}
        mine = {k: v for k, v in files.items() if v is not None}
        for key, loaded in files.items():
            name = key.split("/", 1)[1]
            if loaded is None:
                present.pop(name, None)
            elif name not in present:
                present[name] = AppliedWorkflow(key=key, path=loaded.where.path)
        graph = {name: self._calls_for(w.key, mine) for name, w in present.items()}
        cross = call_problems(account, graph, mine)
        for key, found in outbound_problems(mine)[0].items():
            cross.setdefault(key, []).extend(found)
        if account in self._directories:
            for key, found in ref_problems(account, self._directories[account], mine).items():
                cross.setdefault(key, []).extend(found)
        for key, loaded in files.items():
            commit = step.attribution.get(key, step.commit)
            if key in self._held:  # queued behind a held-back restore: history is never reordered
                self._attempted[key] = commit.sha
                continue
            if loaded is None:
                self._delete(key, commit)
            else:
                problems = loaded.problems + tuple(cross.get(key, ()))
                if problems:
                    self._reject(key, loaded, problems, commit)
                else:
                    self._accept(key, loaded, commit)
            self._attempted[key] = commit.sha

    def _calls_for(self, key: str, proposals: Mapping[str, Loaded]) -> tuple[str, ...]:
        loaded = proposals.get(key)
        if loaded is not None and loaded.ok:
            return loaded.calls
        current = self._state.get(key)
        return current.calls if current else ()

    def _accept(self, key: str, loaded: Loaded, commit: CommitInfo) -> None:
        current = self._state.get(key) or AppliedWorkflow(key=key, path=loaded.where.path, deleted=True)
        self._index(key)
        self._problems.pop(key, None)
        if current.present and current.content_hash == loaded.content_hash:
            self._state[key] = replace(current, path=loaded.where.path, sync="Synced", message="", blocked_commit=None)
            return
        version = current.version + 1
        restored_from = current.hashes.get(loaded.content_hash)
        if restored_from is not None and self._busy.get(key):
            self._hold(current, loaded, commit, restored_from)
            return
        if restored_from is not None:
            action: Literal["created", "updated", "restored"] = "restored"
        elif current.deleted or current.content_hash is None:
            action = "created"
        else:
            action = "updated"
        old = current.content if current.present and current.content_hash else None
        op = VersionOp(
            key=key,
            path=loaded.where.path,
            version=version,
            action=action,
            commit=commit,
            content=loaded.content,
            content_hash=loaded.content_hash,
            source_text=loaded.source_text,
            restored_from=restored_from,
            changes=field_changes(old or {}, loaded.content),
            enabled=loaded.enabled,
            trigger_type=loaded.trigger_type,
            calls=loaded.calls,
        )
        self._ops.append(op)
        self._state[key] = replace(
            current,
            path=op.path,
            version=version,
            content_hash=op.content_hash,
            content=op.content,
            calls=op.calls,
            deleted=False,
            sync="Synced",
            message="",
            enabled=op.enabled,
            trigger_type=op.trigger_type,
            last_applied_commit=commit.sha,
            blocked_commit=None,
            hashes={**current.hashes, op.content_hash: version},
        )

    def _hold(self, current: AppliedWorkflow, loaded: Loaded, commit: CommitInfo, restored_from: int) -> None:
        op = BlockedOp(current.key, loaded.where.path, current.version, commit, restored_from,
                       tuple(self._busy[current.key]), new=current.blocked_commit != commit.sha)
        self._ops.append(op)
        self._held.add(current.key)
        self._state[current.key] = replace(current, sync="Blocked", message=op.message, blocked_commit=commit.sha)

    def _reject(self, key: str, loaded: Loaded, problems: tuple[Problem, ...], commit: CommitInfo) -> None:
        current = self._state.get(key) or AppliedWorkflow(key=key, path=loaded.where.path)
        self._index(key)
        message = "; ".join(str(p) for p in problems)
        if current.sync != "Invalid" or current.message != message or current.deleted:
            self._ops.append(InvalidOp(key, loaded.where.path, current.version, commit, problems))
        self._problems[key] = problems
        if current.deleted:  # back in git but broken: the deleted version must not come back to life
            current = replace(current, content_hash=None, content=None, calls=(), enabled=False)
        self._state[key] = replace(current, path=loaded.where.path, deleted=False, sync="Invalid", message=message,
                                   blocked_commit=None)

    def _delete(self, key: str, commit: CommitInfo) -> None:
        self._problems.pop(key, None)
        current = self._state.get(key)
        if current is None or current.deleted:
            return
        self._ops.append(DeleteOp(key, current.path, current.version, commit))
        self._state[key] = replace(current, deleted=True, content_hash=None, content=None, calls=(), enabled=False,
                                   sync="Synced", message="", blocked_commit=None)

    def plan(self) -> Plan:
        touched = {op.key for op in self._ops} | set(self._attempted)
        return Plan(
            base=self._base,
            head=self._head,
            full=self._full,
            ops=tuple(self._ops),
            outcome={k: self._state[k] for k in touched if k in self._state},
            attempted=dict(self._attempted),
            invalid=dict(self._problems),
        )
