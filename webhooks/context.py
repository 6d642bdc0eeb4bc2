"""What a request handler works with: the services of one app, and the caller's token."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from flask import current_app

from controller.engine.clock import Clock
from controller.engine.runtime import Engine
from controller.security.intake import WebhookIntake
from controller.security.secrets import SecretBox
from controller.settings import Settings
from controller.store import Store

if TYPE_CHECKING:
    from sqlalchemy import Connection

EXTENSION = "wfctl"


class SyncTrigger(Protocol):
    def sync_now(self) -> None:
        """Start a reconcile pass at once; calls in a burst coalesce into one pass."""
        ...


@dataclass
class Services:
    """Everything one app serves from; built by :func:`webhooks.create_app`, kept in ``app.extensions``."""

    settings: Settings
    store: Store
    engine: Engine
    clock: Clock
    box: SecretBox
    intake: WebhookIntake
    controller: SyncTrigger | None
    git_secret: str | None
    environ: Mapping[str, str]  # WFC_METRICS_TOKEN, PROMETHEUS_MULTIPROC_DIR

    def now(self) -> datetime:
        return self.clock.now()

    def writing(self) -> AbstractContextManager[Connection]:
        """A write transaction of the store (writers queue in :class:`controller.store.db.WriterLock`)."""
        return self.store.tx()


def services() -> Services:
    found: Any = current_app.extensions[EXTENSION]
    return found  # type: ignore[no-any-return]
