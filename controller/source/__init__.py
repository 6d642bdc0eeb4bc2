"""The git side of wfctl: open or clone a repository, follow a branch, read workflow files.

Reconciliation asks this package four questions: what is the head of the branch, which paths
under the root changed since the last applied commit (and in which commits), what do those files
contain at a commit, and who last touched each file. Everything is read from commits, never from
a working tree.
"""

from controller.source.git import GitSource
from controller.source.paths import safe_worktree_path
from controller.source.records import Change, CommitInfo, TreeEntry

__all__ = ["Change", "CommitInfo", "GitSource", "TreeEntry", "safe_worktree_path"]
