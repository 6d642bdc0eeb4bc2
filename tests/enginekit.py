"""A real repository + store + engine with a manual clock, for engine tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from git import Repo
from gitutil import commit_files, make_repo
from servers import loopback_config

from controller.engine.clock import ManualClock
from controller.engine.runtime import Engine
from controller.model.directory import parse_directory
from controller.reconcile.reconciler import Reconciler
from controller.source import GitSource
from controller.store import Store, open_store, views
from controller.store import directory as store_directory

T = TypeVar("T")

DIRECTORY = """
users:
  - {id: u_alice, name: Alice, email: alice@acme.test, permissions: [admin]}
mailboxes:
  - {id: mb_support, name: Support, address: support@acme.test, kind: outbox}
channels:
  - {id: C1, name: oncall, webhook_url: "http://127.0.0.1:9/hook"}
"""


@dataclass
class Kit:
    path: Path
    repo: Repo
    store: Store
    engine: Engine
    clock: ManualClock
    data_dir: Path

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        return commit_files(self.repo, files, message)

    def sync(self) -> None:
        with GitSource(str(self.path), data_dir=self.data_dir) as source:
            Reconciler(source, self.store, clock=self.clock.now).sync()

    def deploy(self, files: dict[str, str | None], message: str = "change") -> None:
        self.commit(files, message)
        self.sync()

    def directory(self, text: str = DIRECTORY, account: str = "acme") -> None:
        with self.store.tx() as conn:
            store_directory.replace_account(conn, account, parse_directory(text, "directory.yaml"), self.clock.now())

    def run(self, key: str, trigger: dict[str, Any] | None = None, record_ref: dict[str, Any] | None = None) -> int:
        execution_id = self.engine.start(key, trigger or {"type": "manual"}, record_ref)
        self.engine.run_until_idle()
        return execution_id

    def show(self, execution_id: int) -> dict[str, Any]:
        with self.store.read() as conn:
            return views.execution(conn, execution_id)

    def steps(self, execution_id: int) -> dict[str, dict[str, Any]]:
        return {s["action_id"]: s for s in self.show(execution_id)["steps"]}


def read_store(url: str, read: Callable[[Any], T]) -> T:
    """``read(conn)`` on a store opened for this one read (of a store another process writes), then closed."""
    store = open_store(url)
    try:
        with store.read() as conn:
            return read(conn)
    finally:
        store.close()


@contextmanager
def kit(tmp_path: Path, store_url: str, **engine_options: Any) -> Iterator[Kit]:
    path = tmp_path / "repo"
    repo = make_repo(path)
    commit_files(repo, {"README.md": "workflows\n"}, "init")
    store = open_store(store_url)
    clock = ManualClock()
    data_dir = tmp_path / "data"
    engine_options.setdefault("config", loopback_config())  # the test servers are on 127.0.0.1
    engine = Engine(store, data_dir=data_dir, clock=clock, **engine_options)
    try:
        yield Kit(path, repo, store, engine, clock, data_dir)
    finally:
        store.close()
