"""Remote sources: a bare clone per URL under the data directory, fetched before each look.

The clone lives at ``data_dir/sources/<hash of the URL>`` so a restart reuses it and only fetches
what is new. Its branches mirror the remote's (``+refs/heads/*:refs/heads/*`` with ``--prune``):
a force-push moves the local branch too, and a deleted branch disappears. Without a branch
setting, the source follows the remote's default branch as it was when the clone was made.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from pathlib import Path
from types import MappingProxyType

from git import Git, GitCommandError, Repo
from git.exc import InvalidGitRepositoryError, NoSuchPathError, UnsafeProtocolError

from controller.errors import SourceError
from controller.source.runner import stderr_text

logger = logging.getLogger(__name__)

# `user@host:path`, git's scp-like syntax for ssh.
_SCP_LIKE = re.compile(r"^[\w.~+-]+@[\w.-]+:")
_USERINFO = re.compile(r"://[^/@]*@")
_REFSPEC = "+refs/heads/*:refs/heads/*"
# A daemon must never sit at a credential prompt nobody will answer; fail and report instead.
_NETWORK_ENV = MappingProxyType({"GIT_TERMINAL_PROMPT": "0"})
_CLONE_TIMEOUT_S = 600.0
_FETCH_TIMEOUT_S = 120.0


def is_remote(location: str) -> bool:
    """Whether a source location is a URL to clone rather than a local repository path."""
    return "://" in location or bool(_SCP_LIKE.match(location))


def redact(url: str) -> str:
    """The URL without its user and password, so a token never reaches a log or a message."""
    return _USERINFO.sub("://***@", url)


def clone_dir(data_dir: Path, url: str) -> Path:
    """Where the clone of ``url`` lives: stable across restarts, one folder per URL."""
    return data_dir / "sources" / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def open_clone(url: str, data_dir: Path) -> Repo:
    """Open the clone of ``url`` and fetch it, or clone it when there is none yet."""
    try:
        Git.check_unsafe_protocols(url)
    except UnsafeProtocolError:
        raise SourceError(
            f"{redact(url)}: this protocol may run commands; use an https, ssh or file URL"
        ) from None
    target = clone_dir(data_dir, url)
    repo = _open_existing(target, url)
    if repo is None:
        return _clone(url, target)
    fetch(repo, url)
    return repo


def fetch(repo: Repo, url: str) -> None:
    """Bring every branch of the clone up to date with the remote, force-pushes included."""
    try:
        repo.git.fetch("--prune", "--quiet", "origin", env=_NETWORK_ENV, kill_after_timeout=_FETCH_TIMEOUT_S)
    except GitCommandError as error:
        raise _network_error("fetch", url, error) from None


def _open_existing(target: Path, url: str) -> Repo | None:
    if not target.exists():
        return None
    try:
        return Repo(target)
    except (InvalidGitRepositoryError, NoSuchPathError):
        # The folder is ours and holds nothing but a copy of the remote: start it over.
        logger.warning("discarding the unusable clone %s of %s and cloning again", target, redact(url))
        shutil.rmtree(target)
        return None


def _clone(url: str, target: Path) -> Repo:
    # Clone next to the target and rename at the end, so a failed clone never leaves a broken one.
    staging = _staging_dir(target)
    try:
        Git(str(target.parent)).clone(
            "--bare",
            "--quiet",
            "--",
            url,
            str(staging),
            env=_NETWORK_ENV,
            kill_after_timeout=_CLONE_TIMEOUT_S,
        )
        Git(str(staging)).config("remote.origin.fetch", _REFSPEC)
        _install(staging, target)
    except GitCommandError as error:
        raise _network_error("clone", url, error) from None
    except OSError as error:
        raise _unwritable(target, error) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    logger.info("cloned %s into %s", redact(url), target)
    return Repo(target)


def _staging_dir(target: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as error:
        raise _unwritable(target, error) from None


def _install(staging: Path, target: Path) -> None:
    try:
        staging.rename(target)
    except OSError:
        if not target.exists():
            raise
        # Another process (a second replica on the same volume) cloned it first: use theirs.
        logger.info("%s was cloned meanwhile by another process; using that clone", target)


def _network_error(verb: str, url: str, error: GitCommandError) -> SourceError:
    return SourceError(
        f"cannot {verb} {redact(url)}: {redact(stderr_text(error))};"
        " check the URL, the network and the credentials"
    )


def _unwritable(target: Path, error: OSError) -> SourceError:
    return SourceError(f"cannot create the clone {target}: {error}; check that the data folder is writable")
