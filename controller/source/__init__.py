"""The git side of wfctl: open or clone a repository, follow a branch, read workflow files.

Reconciliation asks this package four questions: what is the head of the branch, which paths
under the root changed since the last applied commit (and in which commits), what do those files
contain at a commit, and who last touched each file. Everything is read from commits, never from
a working tree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller import lazy

_WHERE = {"GitSource": "controller.source.git", "safe_worktree_path": "controller.source.paths",
          "Change": "controller.source.records", "CommitInfo": "controller.source.records",
          "TreeEntry": "controller.source.records"}
__all__ = ["Change", "CommitInfo", "GitSource", "TreeEntry", "safe_worktree_path"]


__getattr__ = lazy.exports(__name__, _WHERE)


if TYPE_CHECKING:
    from controller.source.git import GitSource
    from controller.source.paths import safe_worktree_path
    from controller.source.records import Change, CommitInfo, TreeEntry
