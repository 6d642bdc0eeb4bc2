"""The data directory (`--data-dir`, default `.wfctl`): the SQLite store, the secret key, outboxes, clones.

It often sits inside the user's own repository, so it must never end up in git: when wfctl creates
it, it writes a ``.gitignore`` of ``*`` into it (as ``.pytest_cache`` and ``.mypy_cache`` do), and
it refuses, in one line, a data directory whose files git tracks (a committed ``secret.key`` would
give away every webhook secret).

It holds secrets (the key, encrypted webhook secrets and token hashes in the store), so it is
private: the folder is 0700 and what wfctl creates in it 0600 (:func:`create_private`, and
:func:`private_umask` for a process such as ``serve`` that keeps creating files there).
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from pathlib import Path

from controller.errors import UsageError

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600

_SYSTEM = (Path("/proc"), Path("/sys"), Path("/dev"))


def ensure(path: Path) -> Path:
    """``path``, created if need be and checked fit for wfctl's files; UsageError in one line if not."""
    resolved = path.resolve()
    if any(resolved == system or system in resolved.parents for system in _SYSTEM):
        raise UsageError(f"--data-dir {path} is a system folder; use a folder of your own (default .wfctl)")
    if path.exists() and not path.is_dir():
        raise UsageError(f"--data-dir {path} is a file, not a folder; pass a folder (default .wfctl)")
    try:
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)  # (the folders above it are the user's)
    except OSError as e:
        raise UsageError(f"cannot create the data directory {path}: {e.strerror or e}; pass --data-dir") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"the data directory {path} is not writable; pass --data-dir")
    ignore = path / ".gitignore"
    if not ignore.exists():
        try:
            create_private(ignore, b"# wfctl's data directory: the store, secret.key and outboxes never belong in "
                                   b"git\n*\n")
        except OSError as e:
            raise UsageError(f"cannot write {ignore}: {e.strerror or e}; pass --data-dir") from None
    tracked = _tracked(path)
    if tracked:
        raise UsageError(f"git tracks files in the data directory {path} ({', '.join(tracked[:3])}); "
                         f"`git rm -r --cached {path}` and keep it out of the repository, or pass --data-dir")
    make_private(path)
    return path


def create_private(path: Path, content: bytes = b"") -> None:
    """Create ``path`` (0600) unless it exists; an existing one is made private (:func:`make_private`)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        make_private(path)
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


def make_private(path: Path) -> None:
    """Take the group's and others' access away from a file (0600) or folder (0700) of wfctl's.

    One created by an earlier version, or under a loose umask, is tightened and the change logged;
    one that is not ours to change is left as it is, with a warning.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if not mode & 0o077:
        return
    wanted = PRIVATE_DIR if stat.S_ISDIR(mode) else PRIVATE_FILE
    try:
        os.chmod(path, wanted)
    except OSError as e:
        log.warning("%s is readable by others (mode %03o) and cannot be made private: %s", path, mode & 0o777,
                    e.strerror or e)
        return
    log.info("made %s private (mode %03o, was %03o)", path, wanted, mode & 0o777)


def private_umask() -> None:
    """Files and folders this process creates from now on are private: for ``serve``, whose loops and
    libraries (the counters of the worker processes, outboxes, clones) keep creating them in the data
    directory. Process-wide, so not for a command that writes the user's repository."""
    os.umask(0o077)


def _tracked(path: Path) -> list[str]:
    """Files under ``path`` that git tracks (nothing when it is not inside a work tree)."""
    if not _in_repository(path):
        return []  # what git would answer ("not a git repository"), without starting it on every command
    try:
        done = subprocess.run(["git", "-C", str(path), "ls-files", "--", "."], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return done.stdout.split() if done.returncode == 0 else []


def _in_repository(path: Path) -> bool:
    """Whether git could find a repository from ``path``: a ``.git`` (folder or file) in it or above it,
    or one named by the environment. A bare repository found otherwise has no work tree to track files."""
    if os.environ.get("GIT_DIR") or os.environ.get("GIT_WORK_TREE"):
        return True
    resolved = path.resolve()  # git walks up from the physical folder too
    return any((folder / ".git").exists() for folder in (resolved, *resolved.parents))
