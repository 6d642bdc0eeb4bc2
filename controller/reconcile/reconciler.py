"""One reconcile pass: git head -> load what changed -> plan (pure) -> apply (one transaction).

The pass diffs from the source's last attempted commit: each new commit on the first-parent chain
is one :class:`Step`, so each commit that changes a workflow becomes one version carrying that
commit's sha, author and subject. The first pass, or one after a force-push (the old commit is no
longer an ancestor of head), compares the whole tree at head with the store instead. Reading is
proportional to what changed: a one-file sync reads one diff, one file and one account's rows.

With a verification policy (``--verify-commits head|all``) a pass first judges the new commits'
signatures (:mod:`controller.source.verify`): ``head`` the head commit, which vouches for every account
changed since the last applied commit; ``all`` every commit since then, merged ones included. The
first pass, or one whose last applied commit is gone, judges head alone, for the whole tree (there is
no "since" to walk from; the head's signer vouches for what it points at, as with Flux). A refused
commit applies nothing: ``SourceVerified=False`` names it, and the store keeps the last verified state.
"""


from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select

from controller.errors import ConflictError, Problem, SourceError, StoreError, UnverifiedCommit
from controller.reconcile import conditions
from controller.reconcile.apply import SourceMeta, apply_plan
from controller.reconcile.loader import Loaded, WorkflowPath, bulk_loading, classify, load
from controller.reconcile.plan import AppliedWorkflow, BlockedOp, Plan, Step, VersionOp, Walk
from controller.reconcile.state import in_flight, read_applied, read_blocked, read_source, with_history
from controller.source import Change, CommitInfo, GitSource, TreeEntry
from controller.source.verify import Outcome, Policy, judge_all
from controller.store import Store
from controller.store.directory import snapshot as directory_snapshot
from controller.store.leadership import NotLeader
from controller.store.tables import sources, workflows

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    """Reconciles one git source into one store; safe to run from several processes at once."""

    def __init__(self, source: GitSource, store: Store, *, name: str = "default", location: str = "",
                 clock: Clock = utcnow, max_conflicts: int = 5, verification: Policy | None = None):
        self.source = source
        self.verification = verification
        self.store = store
        self.name = name
        self.location = location
        self.clock = clock
        self.max_conflicts = max_conflicts
        self.fence: Callable[[Connection], object] | None = None
        """Run in the apply transaction first: serve's leader check (it raises when the lease was lost)."""

    def plan(self, head: CommitInfo | None = None) -> Plan:
        """What a pass would do now (reads git and the store, writes nothing).

        Raises :class:`UnverifiedCommit` when a new commit fails the verification policy.
        """
        return self._plan(head or self.source.resolve_head())[0]

    def _plan(self, head: CommitInfo) -> tuple[Plan, Outcome | None]:
        with self.store.read() as conn:
            base = read_source(conn, self.name).last_attempted_commit
            moved = base != head.sha
            outcome = self.verify(base, head.sha) if moved else None  # commits up to base were verified
            if base is None or (moved and not self._descends(base, head)):
                if base is not None:
                    log.warning("commit %s is no longer an ancestor of %s (force-push?): comparing the whole tree",
                                base[:12], head.sha[:12])
                with bulk_loading():  # no collections while the whole tree loads and is planned
                    return self._full(conn, base, head), outcome
            blocked = read_blocked(conn)
            if not moved and not blocked:
                return Walk({}, base=base, head=head, full=False).plan(), None
            return self._incremental(conn, base, head, blocked), outcome

    def _descends(self, base: str, head: CommitInfo) -> bool:
        """Whether ``base`` is an ancestor of ``head``; a parent of head is one without asking git."""
        return base in head.parents or self.source.is_ancestor(base, head.sha)

    def verify(self, base: str | None, head: str) -> Outcome | None:
        """The new commits judged by the verification policy (None without one); UnverifiedCommit when one fails."""
        policy = self.verification
        if policy is None:
            return None
        keys = {"allowed_signers": policy.allowed_signers, "gpg_home": policy.gpg_home}
        since = base if base is not None and self._exists(base) else None
        # With all, the commits since the last applied one; none when the branch went back to an older commit
        # (then head is judged alone, as with head).
        signatures = self.source.signatures(since, head, **keys) if policy.mode == "all" and since else []
        if not signatures:
            changed = self.source.changed_paths(since, head)
            paths = tuple(p for c in changed for p in (c.path, c.old_path) if p)
            signatures = [replace(self.source.signature(head, **keys), paths=paths)]
        outcome = judge_all(head, signatures, policy, self.source.root)
        refused = outcome.refused
        if refused is not None:
            raise UnverifiedCommit(outcome.summary(), commit=refused.commit, reason=refused.reason)
        return outcome

    def _exists(self, commit: str) -> bool:
        try:
            self.source.commit(commit)
        except SourceError:
            log.warning("the last applied commit %s is gone (force-push and gc?): verifying head alone", commit[:12])
            return False
        return True

    def sync(self) -> Plan:
        """Plan and apply one pass; retried when another pass applied first."""
        for _ in range(self.max_conflicts):
            try:
                head = self.source.resolve_head()
                self._mark_reconciling(head.sha)
                plan, outcome = self._plan(head)
            except UnverifiedCommit as e:
                self._record_unverified(head.sha, e)
                raise
            except SourceError as e:
                self.record_failure(e)
                raise
            if plan.empty and outcome is not None:
                self._record_verified(outcome)
            if plan.empty:
                if plan.full:  # a first pass (or one after a force-push) found nothing at all: a wrong --root?
                    self._check_root(head)
                return plan
            try:
                with self.store.write() as conn:
                    apply_plan(conn, plan, self._meta(), self.clock(), outcome,
                               verifying=self.verification is not None, fence=self.fence)
            except NotLeader:
                raise  # not a race to plan again for: another replica leads now
            except ConflictError as e:
                log.info("%s", e)
                continue
            self._log(plan)
            return plan
        raise StoreError(f"gave up after {self.max_conflicts} conflicting passes; is another wfctl syncing in a loop?")

    def _meta(self) -> SourceMeta:
        return SourceMeta(self.name, self.location, self.source.branch, self.source.root)

    def _full(self, conn: Connection, base: str | None, head: CommitInfo) -> Plan:
        entries = self.source.entries(head.sha)
        wanted = _workflow_paths(entries, self.source.root)
        applied = read_applied(conn, None)
        directories = directory_snapshot(conn, {k.split("/", 1)[0] for k in [*wanted, *applied]})
        # The Workflow models only judge references (accounts with a directory); without, the pool leaves them out.
        loaded = self._load_entries(head.sha, wanted, entries, models=bool(directories))
        changed: dict[str, Loaded | None] = {
            key: item for key, item in loaded.items() if _differs(applied.get(key), item)
        }
        changed.update({key: None for key, w in applied.items() if w.present and key not in wanted})
        attribution = self.source.last_changes(head.sha, [v.where.path for v in changed.values() if v is not None])
        walk = Walk(with_history(conn, applied, changed), base=base, head=head, full=True, directories=directories,
                    busy=in_flight(conn, changed))
        walk.step(Step(head, changed, {k: attribution[v.where.path] for k, v in changed.items()
                                       if v is not None and v.where.path in attribution}))
        return walk.plan()

    def _incremental(self, conn: Connection, base: str, head: CommitInfo, blocked: dict[str, str]) -> Plan:
        # The usual pass, one commit on top of the last: that commit is head itself, no `git log` needed.
        commits = [head] if head.parents[:1] == (base,) else self.source.first_parent_commits(base, head.sha)
        diffs = self._replays(blocked, base) + [(c, self._changes(c)) for c in commits]
        accounts = {w.account for _, changes in diffs for w in _touched(changes, self.source.root)}
        applied = read_applied(conn, accounts)
        touched = {w.key for _, changes in diffs for w in _touched(changes, self.source.root)}
        touched |= {k for k, w in applied.items() if w.sync == "Invalid"}
        walk = Walk(with_history(conn, applied, touched), base=base, head=head, full=False,
                    directories=directory_snapshot(conn, accounts), busy=in_flight(conn, touched))
        for commit, changes in diffs:
            walk.step(self._step(walk, commit, changes))
        return walk.plan()

    def _changes(self, commit: CommitInfo) -> list[Change]:
        return self.source.changed_paths(commit.parents[0] if commit.parents else None, commit.sha)

    def _replays(self, blocked: dict[str, str], base: str) -> list[tuple[CommitInfo, list[Change]]]:
        """Commits up to ``base`` again, for the workflows whose restore was held back there.

        A held-back restore and every later commit to the same workflow wait in order; each pass
        walks them again, so they apply, in one transaction, as soon as the workflow drains.
        """
        chains: dict[str, set[str]] = {}
        longest: list[CommitInfo] = []
        for key, sha in blocked.items():
            if not self.source.is_ancestor(sha, base):  # rewritten away: the next full compare settles it
                log.warning("%s waited at commit %s, which is gone from the branch; judging head only", key, sha[:12])
                continue
            parents = self.source.commit(sha).parents
            chain = self.source.first_parent_commits(parents[0] if parents else None, base)
            chains[key] = {c.sha for c in chain}
            longest = max(longest, chain, key=len)
        replays = []
        for commit in longest:
            keys = {key for key, shas in chains.items() if commit.sha in shas}
            changes = [c for c in self._changes(commit) if {w.key for w in _touched([c], self.source.root)} & keys]
            if changes:
                replays.append((commit, changes))
        return replays

    def _step(self, walk: Walk, commit: CommitInfo, changes: list[Change]) -> Step:
        root = self.source.root
        files: dict[str, Loaded | None] = {}
        for change in changes:  # removals first: a rename and a new file may share a key
            old = classify(change.old_path or change.path, root) if change.status in ("D", "R") else None
            if old is not None:
                files[old.key] = None
        for change in changes:
            new = classify(change.path, root) if change.status != "D" else None
            if new is not None:
                files[new.key] = self._load(commit.sha, new, change.entry)
        presence = {}
        for key, item in files.items():
            known = walk.known(key)
            if item is None and known is not None and known.present:
                presence[key] = "removed"
            elif item is not None and (known is None or not known.present):
                presence[key] = "added"
        for key in sorted(walk.dependents(presence) - set(files)):
            known = walk.known(key)
            where = classify(known.path, root) if known else None
            if where is not None:
                files[key] = self._load(commit.sha, where)
        return Step(commit, files)

    def _load_entries(self, commit: str, wanted: dict[str, WorkflowPath], entries: dict[str, TreeEntry], *,
                      models: bool = True) -> dict[str, Loaded]:
        """Load every wanted file of the commit: the blobs are read here (by the id the tree listing gave,
        without looking each path up again) and parsed over every core when there are many."""
        from controller.reconcile import pool  # a whole tree only: a one-file sync needs no process pool

        links = {key: self._load(commit, where) for key, where in wanted.items() if entries[where.path].is_symlink}
        blobs = [(key, where) for key, where in wanted.items() if key not in links]
        with closing(self.source.read_blobs(entries[where.path].sha for _, where in blobs)) as data:
            parsed = pool.load_all(((where, blob) for (_, where), blob in zip(blobs, data, strict=True)),
                                   expected=len(blobs), models=models)  # read as the pool takes them: both at once
        loaded = {key: item for (key, _), item in zip(blobs, parsed)}
        return {key: links.get(key) or loaded[key] for key in wanted}

    def _load(self, commit: str, where: WorkflowPath, entry: TreeEntry | None = None) -> Loaded:
        """The file at ``commit``; by its blob when the diff named it (a symlink is followed from the path)."""
        try:
            if entry is not None and not entry.is_symlink:
                data = self.source.read_blob(entry.sha)
            else:
                data = self.source.read(commit, where.path)
        except SourceError as e:  # e.g. a symlink out of the repository: that file is invalid, not the pass
            return Loaded(where, "", None, (Problem(where.path, 0, 0, str(e)),))
        return load(where, data)

    def _check_root(self, head: CommitInfo) -> None:
        """A root folder that is not in the branch, for a store that never had a workflow: a wrong --root.

        (Once workflows were applied, a head without the folder is a commit that deleted them all.)
        """
        if self.source.has_root(head.sha):
            return
        with self.store.read() as conn:
            if conn.execute(select(workflows.c.id).limit(1)).first() is not None:
                return
        raise SourceError(f"there is no folder {self.source.root}/ in {self.source.branch} at {head.sha[:12]}; "
                          f"pass --root, the folder that holds <account>/<name>.yaml")

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction on the source's conditions, fenced like the apply (a paused old leader writes none)."""
        with self.store.write() as conn:
            if self.fence is not None:
                self.fence(conn)
            yield conn

    def _mark_reconciling(self, head: str) -> None:
        """Show ``Reconciling`` on the source while a pass over a new head runs."""
        with self.store.read() as conn:
            state = read_source(conn, self.name)
            if state.last_attempted_commit == head or conditions.refused_head(state.conditions, head):
                return  # an idle pass, or a refused head again: no write lock taken
        with self._writing() as conn:
            state = read_source(conn, self.name)
            if state.id is not None and state.last_attempted_commit != head:
                marked = conditions.reconciling(state.conditions, self.clock(), head)
                conn.execute(sources.update().where(sources.c.id == state.id).values(conditions=marked))

    def _record_unverified(self, head: str, error: UnverifiedCommit) -> None:
        """``SourceVerified=False`` on the source (made when this is the first pass), once per refused head."""
        with self.store.read() as conn:
            if conditions.refused_head(read_source(conn, self.name).conditions, head):
                return
        log.info("not applying %s: %s", head[:12], error)  # the caller says it: exit 3, or serve's warning
        with self._writing() as conn:
            state = read_source(conn, self.name)
            refused = conditions.unverified(state.conditions, self.clock(), error.reason, error.message,
                                            state.last_applied_commit)
            if state.id is None:
                meta = self._meta()
                conn.execute(insert(sources).values(name=meta.name, location=meta.location, branch=meta.branch,
                                                    root=meta.root, conditions=refused, updated_at=self.clock()))
            else:
                conn.execute(sources.update().where(sources.c.id == state.id).values(conditions=refused))

    def _record_verified(self, outcome: Outcome) -> None:
        """``SourceVerified=True`` for a pass that verified but had nothing to apply; written when it changes."""
        message = outcome.summary()
        with self.store.read() as conn:
            state = read_source(conn, self.name)
        if state.id is None or any(c["type"] == "SourceVerified" and c["status"] == "True" and c["message"] == message
                                   for c in state.conditions):
            return
        with self._writing() as conn:
            state = read_source(conn, self.name)
            if state.id is not None:
                marked = conditions.verified(state.conditions, self.clock(), message)
                conn.execute(sources.update().where(sources.c.id == state.id).values(conditions=marked))

    def record_failure(self, error: BaseException) -> None:
        """Show a failed pass on the source's conditions (``Stalled``); the store may be unreachable too.

        A git failure is ``SourceUnavailable``; anything else a pass raised is ``ReconcileError``,
        with the exception's type and message, until a pass succeeds again.
        """
        reason = "SourceUnavailable" if isinstance(error, SourceError) else "ReconcileError"
        message = str(error) if isinstance(error, SourceError) else f"{type(error).__name__}: {error}"[:1000]
        try:
            with self._writing() as conn:
                state = read_source(conn, self.name)
                if state.id is not None:
                    failed = conditions.source_failed(state.conditions, self.clock(), reason, message)
                    conn.execute(sources.update().where(sources.c.id == state.id).values(conditions=failed))
        except StoreError as e:
            log.warning("could not record the source failure: %s", e)

    def _log(self, plan: Plan) -> None:
        actions = plan.actions()
        log.info("applied %s (%s mode): %d operation(s) on %d workflow(s)", plan.head.sha[:12],
                 "full" if plan.full else "incremental", len(plan.ops), len(actions))
        for key, problems in plan.invalid.items():
            log.warning("%s is invalid: %s", key, "; ".join(str(p) for p in problems))
        for op in plan.ops:
            if isinstance(op, BlockedOp) and op.new:
                log.warning("%s: %s", op.key, op.message)
            elif isinstance(op, VersionOp) and op.action == "restored":
                log.info("%s: version %d restores version %d (%s)", op.key, op.version, op.restored_from,
                         op.commit.sha[:12])


def _workflow_paths(files: Iterable[str], root: str) -> dict[str, WorkflowPath]:
    wanted: dict[str, WorkflowPath] = {}
    for path in sorted(files):
        where = classify(path, root)
        if where is not None and where.key not in wanted:  # foo.yaml wins over foo.yml
            wanted[where.key] = where
    return wanted


def _touched(changes: list[Change], root: str) -> list[WorkflowPath]:
    paths = [p for c in changes for p in (c.path, c.old_path) if p]
    return [w for w in (classify(p, root) for p in paths) if w is not None]


def _differs(applied: AppliedWorkflow | None, loaded: Loaded) -> bool:
    if applied is None or not applied.present or applied.sync != "Synced" or applied.blocked_commit:
        return True
    return not loaded.ok or applied.content_hash != loaded.content_hash or applied.path != loaded.where.path
