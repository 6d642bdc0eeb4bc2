"""`wfctl restore`: write an earlier version of a workflow back to the checkout, as a commit.

The commit is what the controller acts on: pushed or opened as a pull request, it is reconciled
like any other and recognised as a restore (its content equals that earlier version's). Refused
while the workflow has executions running or waiting, so nobody prepares a rollback that would be
held back anyway without knowing it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from git import GitCommandError, InvalidGitRepositoryError, NoSuchPathError, Repo

from controller.errors import GuardError, SourceError, UsageError
from controller.reconcile.state import in_flight
from controller.store import Store, views


@dataclass(frozen=True)
class Restored:
    commit: str
    path: str
    message: str


def restore(store: Store, checkout: Path, key: str, version: int, note: str | None = None, *,
            live: Callable[[str], list[int]] | None = None) -> Restored:
    """Commit version ``version`` of ``key`` into the checkout; GuardError while executions are in flight.

    ``live`` asks a running controller instead of the store which executions are in flight.
    """
    with store.read() as conn:
        target = views.version_content(conn, key, version)
        busy = live(key) if live is not None else in_flight(conn, [key]).get(key, [])
    if busy:
        ids = ", ".join(str(i) for i in busy)
        raise GuardError(f"{key} has {len(busy)} execution(s) running or waiting ({ids}); a restore would be held "
                         f"back until they finish: wait, or cancel them with `wfctl executions cancel ID`",
                         workflow=key)
    repo = _open(checkout)
    top = Path(str(repo.working_tree_dir))
    file = top / target["path"]
    if file.exists() and file.read_text() == target["source_text"]:
        raise UsageError(f"{target['path']} already holds version {version} of {key}; nothing to restore")
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(target["source_text"])
    message = f"Restore {key} to version {version}\n\n" + (f"{note}\n\n" if note else "") + f"Restores: {key}@{version}\n"
    try:
        repo.git.add("--", target["path"])
        repo.git.commit("-m", message, "--", target["path"])
    except GitCommandError as e:
        raise SourceError(f"git could not commit the restore in {top}: {e.stderr.strip()}") from None
    return Restored(repo.head.commit.hexsha, target["path"], message)


def _open(checkout: Path) -> Repo:
    try:
        repo = Repo(checkout, search_parent_directories=True)
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise UsageError(f"{checkout} is not a git checkout; run restore in a clone of the workflow repository "
                         f"(--repo PATH)") from None
    if repo.bare:
        raise UsageError(f"{checkout} is a bare repository; restore needs a checkout to commit in")
    return repo
