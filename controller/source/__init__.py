"""The git side of wfctl: open or clone a repository, follow a branch, read workflow files.

Reconciliation asks this package four questions: what is the head of the branch, which paths
under the root changed since the last applied commit (and in which commits), what do those files
contain at a commit, and who last touched each file. Everything is read from commits, never from
a working tree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {"GitSource": "controller.source.git", "safe_worktree_path": "controller.source.paths",
          "Change": "controller.source.records", "CommitInfo": "controller.source.records",
          "TreeEntry": "controller.source.records"}
__all__ = ["Change", "CommitInfo", "GitSource", "TreeEntry", "safe_worktree_path"]


def __getattr__(name: str) -> Any:
    """Load lazily: path checks and commit records need no GitPython (``wfctl validate`` stays quick)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'controller.source' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from controller.source.git import GitSource
    from controller.source.paths import safe_worktree_path
    from controller.source.records import Change, CommitInfo, TreeEntry
