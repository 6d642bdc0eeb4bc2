"""What git tells the controller: commits, changed paths and tree entries.

The values are immutable, and every parser here is a pure function of git's ``-z`` output, so
the tricky byte-level work can be tested without a repository. Paths are decoded with
``surrogateescape``: a file name that is not UTF-8 round-trips instead of failing a whole sync.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from controller.errors import SourceError
from controller.source.verify import Signature

SYMLINK_MODE = "120000"
GITLINK_MODE = "160000"  # a submodule: a commit of another repository, never a workflow file

# One `git log -z` record. The leading NUL makes an empty token mark the start of every record:
# file names and shas are never empty, so the marker cannot be confused with either.
LOG_FORMAT = "%x00%H%x00%P%x00%an%x00%ae%x00%ct%x00%B"
_LOG_FIELDS = 6
# What git says about a commit's signature (see controller.source.verify), one field after each NUL.
SIGNATURE_FORMAT = "%x00%H%x00%G?%x00%GK%x00%GF%x00%GP%x00%GS"
SIGNATURE_FIELDS = 6

# How diff-tree statuses map onto the four the reconciler knows. A type change (file <-> symlink)
# is a modification of the same path; copies only appear with -C, which is never passed.
_STATUSES = {"A": "A", "M": "M", "D": "D", "R": "R", "T": "M", "C": "A"}


@dataclass(frozen=True)
class CommitInfo:
    """One commit: who, when, what was said, and where it sits in the history."""

    sha: str
    author: str
    author_email: str
    committed_at: datetime  # committer time, in UTC
    summary: str  # the first line of the message
    message: str  # the whole message without trailing newlines
    parents: tuple[str, ...]


@dataclass(frozen=True)
class Change:
    """One path that differs between two commits."""

    status: str  # 'A' added, 'M' modified, 'D' deleted, 'R' renamed
    path: str  # repo-relative posix path: the new one for a rename, the old one for a delete
    old_path: str | None = None  # set for renames only
    # The new side's mode and blob as diff-tree printed them (None for a delete), so that reading the changed
    # file needs no tree lookup. Not part of what changed: two equal changes may come from different listings.
    entry: TreeEntry | None = field(default=None, compare=False, repr=False)


class TreeEntry(NamedTuple):
    """A file in a commit's tree: its mode as git prints it (``100644``, ``120000``) and blob sha."""

    mode: str
    sha: str

    @property
    def is_symlink(self) -> bool:
        """Whether the blob holds a symlink's target rather than file content."""
        return self.mode == SYMLINK_MODE


def commit_info(
    sha: str, parents: Iterable[str], author: str, email: str, timestamp: int, message: str
) -> CommitInfo:
    """Build a :class:`CommitInfo` the same way whether git log or GitPython read the commit."""
    message = message.rstrip("\n")
    return CommitInfo(
        sha=sha,
        author=author,
        author_email=email,
        committed_at=datetime.fromtimestamp(timestamp, tz=UTC),
        summary=message.split("\n", 1)[0].strip(),
        message=message,
        parents=tuple(parents),
    )


def decode_path(raw: bytes) -> str:
    """A path from git's -z output, undecodable bytes kept as surrogates."""
    return raw.decode("utf-8", "surrogateescape")


def parse_ls_tree(output: bytes) -> dict[str, TreeEntry]:
    """Parse ``git ls-tree -r -z``: path -> entry, blobs and symlinks only (submodules skipped)."""
    entries: dict[str, TreeEntry] = {}
    for record in output.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, kind, sha = meta.decode("ascii").split(" ")
        if kind == "blob":
            entries[decode_path(path)] = TreeEntry(mode, sha)
    return entries


def parse_diff_tree(output: bytes) -> list[Change]:
    """Parse ``git diff-tree -r -z -M`` raw output into changes, submodules skipped."""
    changes: list[Change] = []
    tokens = iter(output.split(b"\0"))
    for header in tokens:
        if not header:
            continue
        old_mode, new_mode, _, new_sha, status = header[1:].decode("ascii").split(" ")
        paths = [decode_path(next(tokens))]
        if status[0] in "RC":
            paths.append(decode_path(next(tokens)))
        if GITLINK_MODE in (old_mode, new_mode):
            continue
        changes.append(_change(status[0], paths, None if status[0] == "D" else TreeEntry(new_mode, new_sha)))
    return changes


def _change(status: str, paths: list[str], entry: TreeEntry | None = None) -> Change:
    if status not in _STATUSES:
        # Unmerged or unknown entries cannot come from comparing two commits: say so loudly.
        raise SourceError(f"git reported status {status!r} for {paths[-1]}; this is a bug in wfctl")
    if status == "R":
        return Change("R", paths[1], paths[0], entry)
    return Change(_STATUSES[status], paths[-1], entry=entry)


def iter_tokens(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Split a stream of byte chunks on NUL, yielding tokens as soon as they are complete."""
    pending = b""
    for chunk in chunks:
        *complete, pending = (pending + chunk).split(b"\0")
        yield from complete
    if pending:
        yield pending


def iter_log_records(tokens: Iterable[bytes]) -> Iterator[tuple[CommitInfo, list[str]]]:
    """Parse ``git log -z --format=LOG_FORMAT [--name-only]`` into (commit, touched paths)."""
    for fields, files in iter_records(tokens, _LOG_FIELDS):
        yield _log_commit(fields), files


def iter_records(tokens: Iterable[bytes], count: int) -> Iterator[tuple[list[bytes], list[str]]]:
    """Parse ``git log -z [--name-only]`` with a format of ``count`` fields, each after a NUL, the first
    never empty: (fields, touched paths) per commit."""
    fields: list[bytes] = []
    files: list[str] = []
    for token in tokens:
        if len(fields) < count:
            if fields or token:  # empty tokens before a record are its marker and separators
                fields.append(token)
        elif token:
            # --name-only puts a newline between the last field and the first file name.
            files.append(decode_path(token[1:] if not files and token.startswith(b"\n") else token))
        else:
            yield fields, files
            fields, files = [], []
    if len(fields) == count:
        yield fields, files


def _log_commit(fields: list[bytes]) -> CommitInfo:
    sha, parents, author, email, timestamp, message = (f.decode("utf-8", "replace") for f in fields)
    return commit_info(sha, parents.split(), author, email, int(timestamp), message)


def parse_signature(fields: list[bytes], paths: list[str]) -> Signature:
    """One record of ``git log -z --format=SIGNATURE_FORMAT [--name-only]``."""
    sha, status, key, fingerprint, primary, signer = (f.decode("utf-8", "replace").strip() for f in fields)
    return Signature(sha, status, key, fingerprint, primary, signer, tuple(paths))
