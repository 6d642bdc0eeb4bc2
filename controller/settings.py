"""Controller settings: where the repository, the branch, the root folder, the store and the data live.

Built once by the CLI (from options and ``WFC_*`` environment variables) or by a test, then passed
down; nothing reads the environment behind the caller's back.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `wfctl --help` and `wfctl validate` load none of them
    from controller.config import Config
    from controller.engine.clock import Clock
    from controller.engine.runtime import Engine
    from controller.reconcile.reconciler import Reconciler
    from controller.source import GitSource
    from controller.source.verify import Policy
    from controller.store import Store


@dataclass(frozen=True)
class Settings:
    repo: str = "."
    branch: str | None = None
    root: str = "workflows.d"
    database_url: str | None = None
    data_dir: Path = Path(".wfctl")
    config_path: Path | None = None  # feature flags; default <data-dir>/config.yaml when it exists
    verify_commits: str = "off"  # off | head | all (controller.source.verify)
    allowed_signers: Path | None = None  # SSH keys, in git's gpg.ssh.allowedSignersFile format
    gpg_home: Path | None = None  # a GnuPG home holding the trusted public keys

    @property
    def db_url(self) -> str:
        from controller.store.db import default_url

        return self.database_url or default_url(self.data_dir)

    def data_path(self) -> Path:
        """The data directory, created (with its ``.gitignore``) and checked; UsageError if unfit.

        Checked once per Settings (one command): the store, the engine and the secret key all ask.
        """
        return self._checked_data_dir

    @cached_property
    def _checked_data_dir(self) -> Path:
        from controller.datadir import ensure

        return ensure(self.data_dir)

    @property
    def config_file(self) -> Path:
        """The configuration file: ``--config``, else ``<data-dir>/config.yaml`` (which may not exist)."""
        return self.config_path or self.data_dir / "config.yaml"

    def config(self) -> Config:
        from controller.config import load_config

        return load_config(self.config_file)

    def verification(self, config: Config | None = None) -> Policy | None:
        """The commit verification policy of the options and the configuration's account signers (None: off)."""
        from controller.source.verify import policy

        signers: Mapping[str, tuple[str, ...]]
        if config is None and not self.config_file.exists():
            signers = {}  # no file, no account signers: a sync need not load the configuration's models
        else:
            signers = (config or self.config()).account_signers
        return policy(self.verify_commits, self.allowed_signers, self.gpg_home, signers, str(self.config_file))

    def open_store(self, *, upgrade: bool = True) -> Store:
        from controller.store import open_store

        if self.database_url is None:
            self.data_path()  # the default store lives there
        return open_store(self.db_url, upgrade=upgrade)

    def open_source(self) -> GitSource:
        from controller.source import GitSource

        if "://" in self.repo:
            self.data_path()  # a URL is cloned there
        return GitSource(self.repo, branch=self.branch, root=self.root, data_dir=self.data_dir)

    @contextmanager
    def reconciler(self) -> Iterator[Reconciler]:
        """A reconciler over this source and store, closed afterwards."""
        from controller.reconcile.reconciler import Reconciler

        verification = self.verification()  # a bad option fails before anything is opened
        store = self.open_store()
        try:
            with self.open_source() as source:
                yield Reconciler(source, store, location=self.repo, verification=verification)
        finally:
            store.close()

    def engine(self, store: Store, *, clock: Clock | None = None, lease_seconds: float = 60.0,
               config: Config | None = None) -> Engine:
        from controller.engine.runtime import Engine

        return Engine(store, data_dir=self.data_path(), clock=clock, lease_seconds=lease_seconds,
                      config=config or self.config())
