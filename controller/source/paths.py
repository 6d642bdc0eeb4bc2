"""Paths inside a repository: the watched root, symlink targets, and working-tree files.

A workflow file must come from the repository itself. A symlink is fine while it points at
another file of the same repository; one that leaves it (an absolute target, or ``..`` past the
top) could make the controller read anything on the host, so it is refused with a message that
says what to do instead.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from controller.errors import SourceError, UsageError


def normalize_root(root: str) -> str:
    """The watched folder as a clean repo-relative posix path; ``""`` means the whole repository."""
    cleaned = posixpath.normpath(root.strip().replace("\\", "/")) if root.strip() else "."
    if cleaned.startswith("/") or _escapes(cleaned):
        raise UsageError(
            f"root {root!r} is not inside the repository; pass a folder relative to the repository's"
            " top, such as 'workflows.d'"
        )
    return "" if cleaned == "." else cleaned


def normalize_path(path: str) -> str:
    """A repo-relative posix path as git names it; refuses one that leaves the repository."""
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("/") or _escapes(cleaned) or cleaned == ".":
        raise SourceError(f"{path!r} is not a file path inside the repository; pass a repo-relative path")
    return cleaned


def is_under(path: str, root: str) -> bool:
    """Whether a repo-relative path lies in ``root`` (every path lies in the root ``""``)."""
    return not root or path.startswith(root + "/")


def resolve_link(link: str, target: str) -> str:
    """The repo-relative path a symlink at ``link`` points to, the way the filesystem would.

    Raises :class:`SourceError` when the target is absolute or climbs out of the repository.
    """
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link), target))
    if target.startswith("/") or _escapes(resolved) or resolved == ".":
        raise SourceError(
            f"{link}: symlink points outside the repository ({target}); replace it with the file"
        )
    return resolved


def safe_worktree_path(repo_root: Path, path: Path) -> Path:
    """The real path of a working-tree file, refusing one whose real location is outside the repo.

    A relative ``path`` is taken relative to ``repo_root``. Symlinks (of the file or of any folder
    on the way) are resolved; the file need not exist.
    """
    root = repo_root.resolve()
    given = path if path.is_absolute() else repo_root / path
    real = given.resolve()
    if real.is_relative_to(root):
        return real
    if _lexical(given).is_relative_to(_lexical(repo_root)):
        raise SourceError(f"{path}: symlink points outside the repository ({real}); replace it with the file")
    raise SourceError(f"{path} is outside the repository {root}; pass a file inside it")


def _lexical(path: Path) -> Path:
    """An absolute path with ``..`` folded but symlinks left alone: where the user thinks it is."""
    return Path(posixpath.normpath(path.absolute()))


def _escapes(normalized: str) -> bool:
    return normalized == ".." or normalized.startswith("../")
