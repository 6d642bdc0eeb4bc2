"""Running one git command for a bulk answer: bytes out, a stream of NUL-separated tokens, or a
conversation (requests on stdin, answers on stdout) with a process of its own.

Output is taken as raw bytes (``-z`` output is binary: paths are not quoted and may be any
encoding), and a failing command becomes a :class:`SourceError` carrying git's own explanation.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, cast

from git import GitCommandError, Repo

from controller.errors import SourceError
from controller.source.records import iter_tokens

_READ_SIZE = 65536


def run(repo: Repo, command: str, *args: str, where: str, config: Sequence[str] = (),
        env: Mapping[str, str] | None = None) -> bytes:
    """The whole output of ``git COMMAND ARGS`` in ``repo``; ``where`` names the repo in errors.

    ``config`` entries (``key=value``) go before the command as ``-c``; ``env`` is added to git's environment.
    """
    try:
        output = _command(repo, command, config)(*args, stdout_as_string=False, strip_newline_in_stdout=False,
                                                 **({"env": dict(env)} if env else {}))
    except GitCommandError as error:
        raise SourceError(f"git {command} failed in {where}: {stderr_text(error)}") from None
    return bytes(output)


@contextmanager
def stream(repo: Repo, command: str, *args: str, where: str) -> Iterator[Iterator[bytes]]:
    """The NUL-separated tokens of ``git COMMAND ARGS`` as they arrive; leaving early kills git."""
    # Keep GitPython's wrapper referenced: when it is collected it terminates the process.
    handle = _command(repo, command)(*args, as_process=True)
    process: subprocess.Popen[bytes] = handle.proc
    assert process.stdout is not None and process.stderr is not None  # as_process pipes both
    try:
        stdout = cast(io.BufferedReader, process.stdout)  # read1 hands over what has arrived
        yield iter_tokens(iter(partial(stdout.read1, _READ_SIZE), b""))
    finally:
        killed = _stop(process)
        stderr = b"" if killed else process.stderr.read()
        process.stdout.close()
        process.stderr.close()
    if not killed and process.returncode != 0:
        message = stderr.decode("utf-8", "replace").strip() or f"exit {process.returncode}"
        raise SourceError(f"git {command} failed in {where}: {message}")


@contextmanager
def conversation(repo: Repo, command: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``git COMMAND ARGS`` with its stdin and stdout piped to the caller (e.g. ``cat-file --batch``); at the
    end its stdin is closed and it is reaped, killed first when it is still running (the caller left early)."""
    # Keep GitPython's wrapper referenced: when it is collected it terminates the process.
    handle = _command(repo, command)(*args, as_process=True, istream=subprocess.PIPE)
    process: subprocess.Popen[bytes] = handle.proc
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    try:
        yield process
    finally:
        try:
            process.stdin.close()
        except OSError:  # git is gone already (a broken pipe): nothing to flush
            pass
        _stop(process)
        process.stdout.close()
        process.stderr.close()


def stderr_text(error: GitCommandError) -> str:
    """git's own explanation of a failure, on one line."""
    # GitPython wraps it as "\n  stderr: '<text>'".
    text = str(error.stderr).strip().removeprefix("stderr:").strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        text = text[1:-1]
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or f"exit {error.status}"


def _stop(process: subprocess.Popen[bytes]) -> bool:
    """Reap the process, killing it when the caller stopped reading first; True if killed."""
    killed = process.poll() is None
    if killed:
        process.kill()
    process.wait()
    return killed


def _command(repo: Repo, command: str, config: Sequence[str] = ()) -> Callable[..., Any]:
    # GitPython maps diff_tree to `git diff-tree`, and runs the git executable it was configured with;
    # options given by calling repo.git go before the command, for that one command only.
    git = repo.git(c=list(config)) if config else repo.git
    return cast(Callable[..., Any], getattr(git, command.replace("-", "_")))
