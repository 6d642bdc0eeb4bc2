"""Build real git repositories in tests: no mocks, and nothing taken from the global git config.

    repo = make_repo(tmp_path / "repo")
    sha = commit_files(repo, {"workflows.d/acme/a.yaml": "x: 1\\n", "old.yaml": None}, "Add a")
    git(tmp_path / "repo", "log", "--oneline")

Every repository made here sets its own identity and turns signing off, so tests behave the same
on a laptop with a signing key and in CI with no configuration at all.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from git import Repo

AUTHOR_NAME = "Test Author"
AUTHOR_EMAIL = "author@example.com"
_LOCAL_CONFIG = {
    "user.name": AUTHOR_NAME,
    "user.email": AUTHOR_EMAIL,
    "commit.gpgsign": "false",
    "tag.gpgsign": "false",
    "core.autocrlf": "false",
    "core.symlinks": "true",
}


@dataclass(frozen=True)
class Symlink:
    """A value for :func:`commit_files`: commit a symlink pointing at ``target``."""

    target: str


def git(repo_path: Path | str, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run ``git -C repo_path ARGS`` and return its output without the final newline."""
    result = subprocess.run(
        ["git", "-C", str(repo_path), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return result.stdout.removesuffix("\n")


def make_repo(path: Path, *, branch: str = "main", bare: bool = False) -> Repo:
    """Create an empty repository (a working tree, or bare) whose first branch is ``branch``."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", f"--initial-branch={branch}", *(["--bare"] if bare else []))
    configure(path)
    return Repo(path)


def clone_repo(url: str, path: Path) -> Repo:
    """Clone ``url`` into ``path`` (a working copy to commit and push from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    git(path.parent, "clone", "-q", url, str(path))
    configure(path)
    return Repo(path)


def configure(repo_path: Path) -> None:
    """Give a repository its own identity and settings, independent of the user's config."""
    for key, value in _LOCAL_CONFIG.items():
        git(repo_path, "config", key, value)


def commit_files(
    repo: Repo,
    files: Mapping[str, str | Symlink | None],
    message: str,
    *,
    author_name: str = AUTHOR_NAME,
    author_email: str = AUTHOR_EMAIL,
    when: datetime | None = None,
) -> str:
    """Write (text or :class:`Symlink`) or delete (None) files, commit them all, return the sha."""
    top = Path(str(repo.working_tree_dir))
    for relpath, content in files.items():
        _write(top / relpath, content)
    if files:
        git(top, "--literal-pathspecs", "add", "--all", "--", *files)
    env = {"GIT_AUTHOR_NAME": author_name, "GIT_AUTHOR_EMAIL": author_email}
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = _git_date(when)
    git(top, "commit", "-q", "--allow-empty", "--no-verify", "-m", message, env=env)
    return git(top, "rev-parse", "HEAD")


def _write(target: Path, content: str | Symlink | None) -> None:
    if target.is_symlink() or target.exists():
        target.unlink()  # replacing a file by a symlink (or back) must not write through the link
    if content is None:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, Symlink):
        os.symlink(content.target, target)
    else:
        target.write_bytes(content.encode("utf-8"))


def _git_date(when: datetime) -> str:
    """git's raw date format, ``<unix seconds> <+hhmm>``; a naive datetime is taken as UTC."""
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    offset = int(aware.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
    sign = "+" if offset >= 0 else "-"
    return f"{int(aware.timestamp())} {sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
