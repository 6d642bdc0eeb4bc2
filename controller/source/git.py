"""The git source: a branch of a local or cloned repository, read commit by commit.

Everything is read from commits, never from a working tree, so a dirty checkout is never applied.
Bulk work costs one git process (``ls-tree``, ``diff-tree``, ``log``) whatever the repository's
size; single objects go through GitPython's persistent ``git cat-file --batch`` processes, so
reading a file does not start a process either, and a whole tree's blobs through one ``cat-file
--batch`` asked many at a time. A :class:`GitSource` is not thread-safe (neither
are those processes): use one per thread.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import posixpath
import re
import tempfile
from collections.abc import Generator, Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from git import Commit, GitCommandError, Repo
from git.exc import InvalidGitRepositoryError, NoSuchPathError
from git.objects.fun import tree_entries_from_data
from git.util import bin_to_hex, hex_to_bin

from controller.errors import SourceError
from controller.source import runner
from controller.source.paths import is_under, normalize_path, normalize_root, resolve_link, safe_worktree_path
from controller.source.records import (
    GITLINK_MODE,
    LOG_FORMAT,
    SIGNATURE_FIELDS,
    SIGNATURE_FORMAT,
    Change,
    CommitInfo,
    TreeEntry,
    commit_info,
    iter_log_records,
    iter_records,
    parse_diff_tree,
    parse_ls_tree,
    parse_signature,
)
from controller.source.remote import fetch, is_remote, open_clone, redact
from controller.source.verify import Signature

__all__ = ["Change", "CommitInfo", "GitSource", "TreeEntry", "safe_worktree_path"]

logger = logging.getLogger(__name__)

MAX_SYMLINK_HOPS = 8
# Beyond this many paths, last_changes walks the root instead of naming each path to git.
_MAX_PATHSPECS = 64
_TREE_CACHE_SIZE = 512
# Blobs asked of read_blobs' cat-file at once: the requests (<= 65 bytes each) fit the smallest pipe buffer
# (one 4 KiB page), so writing them never waits for git while git waits for its answers to be read.
_BATCH = 48
_HEX_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# Output that stays the same whatever the user's git configuration says.
_LOG_OPTIONS = ("-z", "--no-show-signature", "--no-color", f"--format={LOG_FORMAT}")
# Branch names git would refuse, or that would change meaning inside a revision expression.
_BAD_BRANCH = re.compile(r"^-|\.\.|[\x00-\x20\x7f~^:?*\[\\]|@\{|^/|/$|\.lock$|^\.|/\.")


class GitSource:
    """One branch of one repository, and the folder (``root``) in it that holds the workflows."""

    def __init__(
        self, location: str, *, branch: str | None = None, root: str = "workflows.d", data_dir: Path
    ) -> None:
        self._url = location if is_remote(location) else None
        self._where = redact(location)
        self._root = normalize_root(root)
        self._repo = open_clone(location, data_dir) if self._url else _open_local(location)
        # Trees are content-addressed, so a parsed tree stays valid for every commit sharing it.
        self._trees: dict[str, dict[str, TreeEntry]] = {}
        try:
            self._branch = _check_branch(branch) if branch is not None else self._current_branch()
            self._branch_head()  # fail now, not at the first poll, on an unknown branch or empty repo
        except BaseException:
            self.close()
            raise

    @property
    def root(self) -> str:
        """The watched folder, relative to the repository's top (``""`` is the whole repository)."""
        return self._root

    @property
    def branch(self) -> str:
        """The branch this source follows."""
        return self._branch

    # -- commits ---------------------------------------------------------------------------

    def resolve_head(self) -> CommitInfo:
        """The branch's newest commit, fetched from the remote first when the source is a URL."""
        if self._url:
            fetch(self._repo, self._url)
        return self._commit_info(self._branch_head())

    def has_root(self, commit_sha: str) -> bool:
        """Whether the root folder exists at ``commit_sha`` (a repository root always does)."""
        if not self._root:
            return True
        return bool(self._run("ls-tree", commit_sha, "--", self._root).strip())

    def commit(self, sha: str) -> CommitInfo:
        """The commit ``sha`` (any revision git understands; a full sha is the usual)."""
        return self._commit_info(self._resolve(sha))

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether ``ancestor`` is reachable from ``descendant`` (a commit is its own ancestor).

        False, not an error, when ``ancestor`` no longer exists (history rewritten and collected).
        """
        try:
            old = self._resolve(ancestor)
        except SourceError:
            logger.debug("%s is gone from %s; treating it as not an ancestor", ancestor, self._where)
            return False
        try:
            self._repo.git.merge_base("--is-ancestor", old, self._resolve(descendant))
        except GitCommandError as error:
            if error.status == 1:  # git's answer "no", not a failure
                return False
            raise SourceError(
                f"git merge-base failed in {self._where}: {runner.stderr_text(error)}"
            ) from None
        return True

    def first_parent_commits(self, since: str | None, until: str) -> list[CommitInfo]:
        """Commits on ``until``'s first-parent chain after ``since`` (exclusive), oldest first.

        ``since`` None means the whole chain. Commits that arrived through the second parent of a
        merge are not on the chain: the merge commit stands for them. ``since`` must exist; after a
        force-push check :meth:`is_ancestor` first and compare whole trees when it is False.
        """
        revisions = f"{self._resolve(since)}..{self._resolve(until)}" if since else self._resolve(until)
        output = self._run("log", "--first-parent", "--reverse", *_LOG_OPTIONS, revisions, "--")
        return [info for info, _ in iter_log_records(output.split(b"\0"))]

    def last_changes(self, until: str, paths: Iterable[str]) -> dict[str, CommitInfo]:
        """For each path, the newest commit on ``until``'s first-parent chain that touched it.

        One ``git log`` walk, stopped as soon as every path is found; paths never touched (or
        outside the root, when many paths are asked at once) are absent from the result.
        """
        wanted = {normalize_path(path) for path in paths}
        found: dict[str, CommitInfo] = {}
        if not wanted:
            return found
        args = ["--first-parent", "--diff-merges=first-parent", "--no-renames", "--name-only", *_LOG_OPTIONS]
        revision, pathspecs = self._resolve(until), self._log_pathspecs(wanted)
        with runner.stream(self._repo, "log", *args, revision, "--", *pathspecs, where=self._where) as tokens:
            for info, touched in iter_log_records(tokens):
                found.update((path, info) for path in touched if path in wanted and path not in found)
                if len(found) == len(wanted):
                    break
        return found

    # -- signatures (see controller.source.verify for what they count for) -------------------

    def signatures(self, since: str, until: str, *, allowed_signers: Path | None,
                   gpg_home: Path | None) -> list[Signature]:
        """The signature of every commit reachable from ``until`` but not from ``since``, oldest first, merged
        ones included, each with the paths it changed itself (a merge: those that differ from every parent).
        """
        revisions = f"{self._resolve(since)}..{self._resolve(until)}"
        return self._signature_log(["--reverse", revisions], allowed_signers, gpg_home, paths=True)

    def signature(self, commit: str, *, allowed_signers: Path | None, gpg_home: Path | None) -> Signature:
        """The signature of one commit, without paths."""
        return self._signature_log(["-1", self._resolve(commit)], allowed_signers, gpg_home, paths=False)[0]

    def _signature_log(self, revisions: list[str], allowed_signers: Path | None, gpg_home: Path | None, *,
                       paths: bool) -> list[Signature]:
        # Always an allowed-signers file (an empty one when none is given), so that an SSH signature reads as
        # "unknown key" rather than as unsigned; always a GnuPG home of ours (an empty one when none is given),
        # so that the user's own keyring never decides.
        config = [f"gpg.ssh.allowedSignersFile={allowed_signers or os.devnull}"]
        # -c: a merge lists only what differs from every parent (what the merge itself changed); --no-renames:
        # a file moved from one account to another counts for both.
        names = ["--name-only", "-c", "--no-renames"] if paths else []
        with contextlib.ExitStack() as stack:
            home = gpg_home or stack.enter_context(tempfile.TemporaryDirectory(prefix="wfctl-gnupg-"))
            output = runner.run(self._repo, "log", "-z", "--no-show-signature", "--no-color", *names,
                                f"--format={SIGNATURE_FORMAT}", *revisions, "--", where=self._where, config=config,
                                env={"GNUPGHOME": str(home)})
        records = iter_records(output.split(b"\0"), SIGNATURE_FIELDS)
        return [parse_signature(fields, files) for fields, files in records]

    # -- trees and files -------------------------------------------------------------------

    def changed_paths(self, a: str | None, b: str) -> list[Change]:
        """Paths under the root that differ from ``a`` to ``b``, renames detected.

        ``a`` None lists every file under the root at ``b`` as added.
        """
        if a is None:
            return [Change("A", path) for path in sorted(self.list_files(b))]
        span = (self._resolve(a), self._resolve(b))
        output = self._run("diff-tree", "-r", "-z", "-M", *span, "--", *self._root_pathspec())
        return parse_diff_tree(output)

    def list_files(self, commit: str) -> dict[str, str]:
        """Every file under the root at ``commit``, symlinks included: path -> blob sha."""
        return {path: entry.sha for path, entry in self.entries(commit).items()}

    def entries(self, commit: str) -> dict[str, TreeEntry]:
        """Every file under the root at ``commit`` with its mode (``120000`` is a symlink)."""
        commit_sha = self._resolve(commit)
        output = self._run("ls-tree", "-r", "-z", "--full-tree", commit_sha, "--", *self._root_pathspec())
        return parse_ls_tree(output)

    def read(self, commit: str, path: str) -> bytes:
        """The content of ``path`` at ``commit``, following symlinks that stay in the repository.

        Raises :class:`SourceError` when the path is missing or a folder, or when a symlink leaves
        the repository or loops.
        """
        sha = self._resolve(commit)
        current = normalize_path(path)
        for _ in range(MAX_SYMLINK_HOPS + 1):
            entry = self._file_entry(sha, current)
            if not entry.is_symlink:
                return self.read_blob(entry.sha)
            current = resolve_link(current, self.read_blob(entry.sha).decode("utf-8", "surrogateescape"))
        raise SourceError(
            f"{path}: more than {MAX_SYMLINK_HOPS} symlinks in a row (a loop?) at {sha[:12]};"
            " replace it with the file"
        )

    def read_blob(self, blob_sha: str) -> bytes:
        """The content of one blob, through the persistent ``git cat-file --batch``."""
        _check_blob_sha(blob_sha)
        try:
            stream = self._repo.odb.stream(hex_to_bin(blob_sha))
        except ValueError:
            raise self._no_object(blob_sha) from None
        data = stream.read()  # read it whole even when it is the wrong type, or the pipe desyncs
        _check_blob_type(blob_sha, _text(stream.type))
        return bytes(data)

    def read_blobs(self, blob_shas: Iterable[str]) -> Generator[bytes, None, None]:
        """:meth:`read_blob` of each sha, in order, as the caller takes them: for a whole tree.

        One ``git cat-file --batch`` of its own (the persistent one stays in step whatever happens here),
        asked :data:`_BATCH` blobs at a time, the answers read from a buffered pipe: a request per blob,
        waiting for each answer, cost ten thousand round trips to git for a cold sync of 10,000 files.
        """
        pending = iter(blob_shas)
        with runner.conversation(self._repo, "cat-file", "--batch") as git:
            assert git.stdin is not None and git.stdout is not None
            while window := list(itertools.islice(pending, _BATCH)):
                for sha in window:
                    _check_blob_sha(sha)
                try:
                    git.stdin.write("".join(f"{sha}\n" for sha in window).encode("ascii"))
                    git.stdin.flush()
                except BrokenPipeError:
                    raise SourceError(f"git cat-file stopped in {self._where}") from None
                for sha in window:
                    yield self._batch_answer(git.stdout, sha)

    def _batch_answer(self, answers: IO[bytes], blob_sha: str) -> bytes:
        """One answer of ``cat-file --batch``: ``<sha> <type> <size>`` and the content, or ``<sha> missing``."""
        header = answers.readline().split()
        if len(header) == 2 and header[1] == b"missing":
            raise self._no_object(blob_sha)
        if len(header) != 3 or header[0].decode("ascii", "replace") != blob_sha:
            raise SourceError(f"git cat-file answered {b' '.join(header)!r} for {blob_sha} in {self._where}")
        size = int(header[2])
        data = answers.read(size + 1)  # the content and its newline, read whole even when it is the wrong type
        if len(data) != size + 1:
            raise SourceError(f"git cat-file stopped in the middle of {blob_sha} in {self._where}")
        _check_blob_type(blob_sha, header[1].decode("ascii"))
        return data[:size]

    def _no_object(self, blob_sha: str) -> SourceError:
        return SourceError(f"{self._where} has no object {blob_sha}; list the files again")

    # -- lifecycle -------------------------------------------------------------------------

    def rest(self) -> None:
        """Stop GitPython's persistent git processes until the next read starts them again: a long-lived
        caller (serve's reconcile loop, one pass every interval) does not keep a ``cat-file`` (~4 MB
        resident) waiting between passes."""
        self._repo.git.clear_cache()

    def close(self) -> None:
        """Stop GitPython's persistent git processes; the source is unusable afterwards."""
        self._trees.clear()
        self._repo.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GitSource({self._where!r}, branch={self._branch!r}, root={self._root!r})"

    # -- internals -------------------------------------------------------------------------

    def _current_branch(self) -> str:
        try:
            return self._repo.active_branch.name
        except TypeError:  # GitPython's way of saying HEAD is detached
            raise SourceError(f"HEAD of {self._where} is detached; pass the branch to follow") from None

    def _branch_head(self) -> str:
        try:
            return self._object(f"refs/heads/{self._branch}^{{commit}}")[0]
        except ValueError:
            raise self._missing_branch() from None

    def _missing_branch(self) -> SourceError:
        listing = self._run("for-each-ref", "--format=%(refname:short)", "refs/heads")
        branches = listing.decode("utf-8", "replace").split()
        if not branches:
            return SourceError(
                f"{self._where} has no commits yet; push a first commit to '{self._branch}' and sync again"
            )
        return SourceError(
            f"{self._where} has no branch '{self._branch}'; pass one of: {', '.join(sorted(branches))}"
        )

    def _resolve(self, revision: str) -> str:
        """The full sha of a commit, checked to exist, without starting a process."""
        try:
            return self._object(f"{revision}^{{commit}}")[0]
        except ValueError:
            raise SourceError(
                f"{self._where} has no commit {revision!r}; it may have been rewritten by a force-push"
            ) from None

    def _commit_info(self, sha: str) -> CommitInfo:
        commit = Commit(self._repo, hex_to_bin(sha))
        message = (
            commit.message if isinstance(commit.message, str) else commit.message.decode("utf-8", "replace")
        )
        return commit_info(
            sha,
            (parent.hexsha for parent in commit.parents),
            str(commit.author.name),
            str(commit.author.email),
            commit.committed_date,
            message,
        )

    def _file_entry(self, commit: str, path: str) -> TreeEntry:
        # cat-file reads one object name per line, so a name with a newline goes through ls-tree.
        entry = self._entry_by_ls_tree(commit, path) if "\n" in path else self._entry_by_tree(commit, path)
        if entry is None:
            raise SourceError(f"{path}: no such file at {commit[:12]} in {self._where}")
        if entry.mode.startswith("04") or entry.mode == GITLINK_MODE:
            raise SourceError(f"{path} is a folder at {commit[:12]}, not a file; pass a file path")
        return entry

    def _entry_by_tree(self, commit: str, path: str) -> TreeEntry | None:
        """The entry from its parsed parent folder: no process started, and cached by tree sha."""
        folder, name = posixpath.split(path)
        try:
            tree_sha, kind, data = self._object(f"{commit}:{folder}")
        except ValueError:  # the folder does not exist at this commit
            return None
        return self._parsed_tree(tree_sha, data).get(name) if kind == "tree" else None

    def _entry_by_ls_tree(self, commit: str, path: str) -> TreeEntry | None:
        output = self._run("ls-tree", "-z", "--full-tree", commit, "--", f":(literal){path}")
        return parse_ls_tree(output).get(path)

    def _parsed_tree(self, tree_sha: str, data: bytes) -> dict[str, TreeEntry]:
        cached = self._trees.get(tree_sha)
        if cached is not None:
            return cached
        parsed = {
            name: TreeEntry(f"{mode:06o}", _text(bin_to_hex(sha)))
            for sha, mode, name in tree_entries_from_data(data)
        }
        if len(self._trees) >= _TREE_CACHE_SIZE:
            del self._trees[next(iter(self._trees))]  # oldest first: dicts keep insertion order
        self._trees[tree_sha] = parsed
        return parsed

    def _object(self, name: str) -> tuple[str, str, bytes]:
        """The sha, type and content of the object ``name`` names; ValueError when there is none.

        Through the persistent ``git cat-file --batch`` that reads blobs too: asking a ``--batch-check`` for
        the header alone would start a second process, which costs more than a small object's content.
        """
        sha, kind, _, data = self._repo.git.get_object_data(name)
        return _text(sha), _text(kind), data

    def _run(self, command: str, *args: str) -> bytes:
        return runner.run(self._repo, command, *args, where=self._where)

    def _root_pathspec(self) -> list[str]:
        # The trailing slash matches the folder only, never a file that happens to share its name.
        return [f":(literal){self._root}/"] if self._root else []

    def _log_pathspecs(self, wanted: set[str]) -> list[str]:
        if len(wanted) <= _MAX_PATHSPECS:
            return [f":(literal){path}" for path in sorted(wanted)]
        if all(is_under(path, self._root) for path in wanted):
            return self._root_pathspec()
        return []


def _open_local(location: str) -> Repo:
    try:
        return Repo(Path(location).expanduser(), search_parent_directories=True)
    except NoSuchPathError:
        raise SourceError(f"{location}: no such folder; pass the path of a git repository or a URL") from None
    except InvalidGitRepositoryError:
        raise SourceError(
            f"{location} is not inside a git repository; run `git init` there,"
            " or pass a repository's path or URL"
        ) from None


def _check_branch(branch: str) -> str:
    if not branch or _BAD_BRANCH.search(branch):
        raise SourceError(f"{branch!r} is not a valid branch name; pass a name such as 'main'")
    return branch


def _check_blob_sha(blob_sha: str) -> None:
    if not _HEX_SHA.fullmatch(blob_sha):
        raise SourceError(f"{blob_sha!r} is not a blob sha; pass the full hex sha from list_files()")


def _check_blob_type(blob_sha: str, kind: str) -> None:
    if kind != "blob":
        raise SourceError(f"{blob_sha} is a {kind}, not a file's blob")


def _text(value: str | bytes) -> str:
    """GitPython hands back some header fields as bytes and others as str."""
    return value.decode("ascii") if isinstance(value, bytes) else value
