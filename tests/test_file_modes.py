"""The data directory is private: `wfctl sync` and `wfctl serve` leave every folder in it 0700 and every file 0600.

The commands run as real processes with umask 0, so a file is private because wfctl made it so, not
because the test machine's umask happened to be strict.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from gitutil import commit_files, make_repo
from servers import free_port, ready, until

from controller.datadir import ensure
from controller.store import open_store

WORKFLOW = """apiVersion: workflows/v1
kind: Workflow
metadata: {name: hello}
spec:
  trigger: {type: manual, entities: [ticket]}
  actions:
    - {id: note, type: record.create, entity: task, set: {title: hello}}
"""


def _modes(data: Path) -> dict[str, str]:
    """Every folder and file under ``data`` (itself included): relative path -> octal mode."""
    found = {".": oct(data.stat().st_mode & 0o777)}
    for path in data.rglob("*"):
        found[path.relative_to(data).as_posix()] = oct(path.lstat().st_mode & 0o777)
    return found


def _not_private(data: Path) -> dict[str, str]:
    wanted = {True: oct(0o700), False: oct(0o600)}
    return {name: mode for name, mode in _modes(data).items()
            if mode != wanted[stat.S_ISDIR((data / name).lstat().st_mode)]}


def _base(tmp_path: Path) -> list[str]:
    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {"workflows.d/acme/hello.yaml": WORKFLOW}, "add hello")
    return [sys.executable, "-m", "controller", "--repo", str(repo), "--data-dir", str(tmp_path / "data")]


def test_sync_on_a_fresh_data_dir_creates_only_private_files(tmp_path: Path) -> None:
    """`wfctl sync` under umask 0: the data dir is 0700; the store, its lock, .gitignore and the key are 0600."""
    done = subprocess.run([*_base(tmp_path), "sync"], capture_output=True, text=True, umask=0, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    data = tmp_path / "data"
    assert {"wfctl.db", "wfctl.db-wlock", ".gitignore"} <= set(_modes(data))
    assert _not_private(data) == {}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the worker process in /proc (Linux)")
def test_serve_with_a_worker_process_keeps_the_data_dir_private_while_it_runs(tmp_path: Path) -> None:
    """`wfctl serve` under umask 0: while it runs (WAL and shared memory open, the worker process's counters
    written to <data-dir>/prometheus) every folder is 0700 and every file 0600."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    server = subprocess.Popen([*_base(tmp_path), "serve", "--interval", "0.5", "--workers", "1",
                               "--worker-processes", "1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, umask=0)
    data = tmp_path / "data"
    try:
        until(lambda: ready(f"http://127.0.0.1:{port}"), timeout=60)
        counters = until(lambda: sorted((data / "prometheus").glob("*.db")), timeout=60)
        assert counters and (data / "wfctl.db-wal").exists() and (data / "wfctl.db-shm").exists()
        assert _not_private(data) == {}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert _not_private(data) == {}


def test_a_data_dir_of_an_earlier_version_is_made_private(tmp_path: Path) -> None:
    """A 0755 data dir with a 0644 store, WAL and lock (as older versions made them) is tightened on open."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    for name in ("wfctl.db", "wfctl.db-wal", "wfctl.db-wlock"):
        (data / name).touch()
        os.chmod(data / name, 0o644)
    store = open_store(f"sqlite:///{ensure(data) / 'wfctl.db'}")
    store.close()
    assert _not_private(data) == {}
