"""The data directory (`--data-dir`, default `.wfctl`): the SQLite store, the secret key, outboxes, clones.

It often sits inside the user's own repository, so it must never end up in git: when wfctl creates
it, it writes a ``.gitignore`` of ``*`` into it (as ``.pytest_cache`` and ``.mypy_cache`` do), and
it refuses, in one line, a data directory whose files git tracks (a committed ``secret.key`` would
give away every webhook secret).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from controller.errors import UsageError

_SYSTEM = (Path("/proc"), Path("/sys"), Path("/dev"))


def ensure(path: Path) -> Path:
    """``path``, created if need be and checked fit for wfctl's files; UsageError in one line if not."""
    resolved = path.resolve()
    if any(resolved == system or system in resolved.parents for system in _SYSTEM):
        raise UsageError(f"--data-dir {path} is a system folder; use a folder of your own (default .wfctl)")
    if path.exists() and not path.is_dir():
        raise UsageError(f"--data-dir {path} is a file, not a folder; pass a folder (default .wfctl)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the data directory {path}: {e.strerror or e}; pass --data-dir") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"the data directory {path} is not writable; pass --data-dir")
    ignore = path / ".gitignore"
    if not ignore.exists():
        try:
            ignore.write_text("# wfctl's data directory: the store, secret.key and outboxes never belong in git\n*\n")
        except OSError as e:
            raise UsageError(f"cannot write {ignore}: {e.strerror or e}; pass --data-dir") from None
    tracked = _tracked(path)
    if tracked:
        raise UsageError(f"git tracks files in the data directory {path} ({', '.join(tracked[:3])}); "
                         f"`git rm -r --cached {path}` and keep it out of the repository, or pass --data-dir")
    return path


def _tracked(path: Path) -> list[str]:
    """Files under ``path`` that git tracks (nothing when it is not inside a work tree)."""
    try:
        done = subprocess.run(["git", "-C", str(path), "ls-files", "--", "."], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return done.stdout.split() if done.returncode == 0 else []
