"""`wfctl restore`: write an earlier version of a workflow back to the checkout, as a commit.

The commit is what the controller acts on: pushed or opened as a pull request, it is reconciled
like any other and recognised as a restore (its content equals that earlier version's). Refused
while the workflow has executions running or waiting, so nobody prepares a rollback that would be
held back anyway without knowing it.

The commit is made by ``git commit``, so it is signed the way the checkout's git configuration says
(``commit.gpgsign``, ``gpg.format``, ``user.signingkey``); with a signing key but no ``commit.gpgsign``
it is signed too (``-S``): a controller that verifies commits would refuse an unsigned restore.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from git import GitCommandError, InvalidGitRepositoryError, NoSuchPathError, Repo

from controller.errors import GuardError, SourceError, UsageError
from controller.reconcile.state import in_flight
from controller.store import Store, views


@dataclass(frozen=True)
class Restored:
    commit: str
    path: str
    message: str


def restore(checkout: Path, key: str, version: int, note: str | None = None, *, store: Store | None = None,
            live: Live | None = None) -> Restored:
    """Commit version ``version`` of ``key`` into the checkout; GuardError while executions are in flight.

    What is in flight, and which commit made the version, come from the store, or from a running
    controller (``live``); the version's file itself then comes from git.
    """
    repo = _open(checkout)
    if live is not None:
        busy = live.in_flight(key)
        made = live.version(key, version)
        target = {"path": made["path"], "source_text": _at_commit(repo, made["commit"], made["path"], version)}
    elif store is not None:
        with store.read() as conn:
            target = views.version_content(conn, key, version)
            busy = in_flight(conn, [key]).get(key, [])
    else:
        raise UsageError("restore needs the store (--db) or a controller (--controller URL --token T)")
    if busy:
        ids = ", ".join(str(i) for i in busy)
        raise GuardError(f"{key} has {len(busy)} execution(s) running or waiting ({ids}); a restore would be held "
                         f"back until they finish: wait, or cancel them with `wfctl executions cancel ID`",
                         workflow=key)
    top = Path(str(repo.working_tree_dir))
    file = top / target["path"]
    if file.exists() and file.read_text() == target["source_text"]:
        raise UsageError(f"{target['path']} already holds version {version} of {key}; nothing to restore")
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(target["source_text"])
    message = f"Restore {key} to version {version}\n\n" + (f"{note}\n\n" if note else "") + f"Restores: {key}@{version}\n"
    try:
        repo.git.add("--", target["path"])
        repo.git.commit(*_sign(repo), "-m", message, "--", target["path"])
    except GitCommandError as e:
        raise SourceError(f"git could not commit the restore in {top}: {e.stderr.strip()}") from None
    return Restored(repo.head.commit.hexsha, target["path"], message)


def _sign(repo: Repo) -> list[str]:
    """``-S`` when git has a signing key and ``commit.gpgsign`` is unset (true signs anyway, false is respected)."""
    if _config(repo, "commit.gpgsign", "--type=bool") is None and _config(repo, "user.signingkey"):
        return ["-S"]
    return []


def _config(repo: Repo, key: str, *options: str) -> str | None:
    try:
        return str(repo.git.config("--get", *options, key)).strip()
    except GitCommandError as e:
        if e.status == 1:  # git's "not set"
            return None
        raise SourceError(f"git config --get {key} failed: {e.stderr.strip()}") from None


class Live(Protocol):
    def in_flight(self, key: str) -> list[int]: ...

    def version(self, key: str, version: int) -> dict[str, Any]: ...


def _at_commit(repo: Repo, commit: str, path: str, version: int) -> str:
    try:
        return str(repo.git.show(f"{commit}:{path}", strip_newline_in_stdout=False))
    except GitCommandError:
        raise SourceError(f"version {version} was made by commit {commit[:12]}, which this checkout does not have; "
                          f"run `git fetch` and try again") from None


def _open(checkout: Path) -> Repo:
    try:
        repo = Repo(checkout, search_parent_directories=True)
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise UsageError(f"{checkout} is not a git checkout; run restore in a clone of the workflow repository "
                         f"(--repo PATH)") from None
    if repo.bare:
        raise UsageError(f"{checkout} is a bare repository; restore needs a checkout to commit in")
    return repo
