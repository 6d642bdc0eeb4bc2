"""The data directory's git check: refused when git tracks files in it, wherever the repository's .git is."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from gitutil import commit_files, make_repo

from controller.datadir import ensure
from controller.errors import UsageError


def test_a_data_directory_outside_any_repository_is_fine(tmp_path: Path) -> None:
    """No .git above the folder: nothing can track it, and it is made with its .gitignore."""
    data = ensure(tmp_path / "plain" / "data")
    assert (data / ".gitignore").is_file()


def test_a_tracked_data_directory_in_a_linked_worktree_is_refused(tmp_path: Path) -> None:
    """In a `git worktree add` checkout .git is a file, not a folder; the check still finds the repository."""
    main = tmp_path / "main"
    commit_files(make_repo(main), {"workflows.d/acme/a.yaml": "x: 1\n", ".wfctl/secret.key": "k\n"}, "add")
    linked = tmp_path / "linked"
    subprocess.run(["git", "-C", str(main), "worktree", "add", "-q", str(linked)], check=True)
    assert (linked / ".git").is_file()
    with pytest.raises(UsageError, match="git tracks files in the data directory"):
        ensure(linked / ".wfctl")
    assert ensure(linked / "untracked") == linked / "untracked"
