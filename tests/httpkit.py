"""The HTTP service over a real repository, store and engine (manual clock), for the HTTP tests.

    with http_kit(tmp_path, store_url) as h:
        token = h.token("workflow.read")
        h.client.get("/api/v1/workflows", headers=h.auth(token))
        h.hook("acme/contact-form", {"name": "Ada"})       # signed with the workflow's current secret
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from enginekit import Kit, kit
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from controller.config import Config
from controller.security import secrets, tokens
from controller.security.signing import sign
from controller.settings import Settings
from webhooks import create_app

WF = "workflows.d/{}/{}.yaml"
GIT_SECRET = "git-hook-secret"


def wf(name: str, trigger: str, actions: str, *, extra: str = "", enabled: bool = True) -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata:\n  name: {name}\n  description: the {name} workflow\n"
            f"spec:\n  enabled: {'true' if enabled else 'false'}\n  trigger: {trigger}\n{extra}  actions:\n{actions}")


SET = "    - {id: note, type: set, vars: {who: '{{ trigger.body.name if trigger.body is defined else 1 }}'}}\n"
FAIL = "    - {id: boom, type: set, vars: {x: '{{ trigger.body.missing }}'}}\n"
WAIT = "    - {id: nap, type: wait, duration: 1d}\n"

WORKFLOWS = {
    ("acme", "contact-form"): wf("contact-form", "{type: webhook}", SET),
    ("acme", "limited"): wf("limited", "{type: webhook}", FAIL, extra="  rateLimit: {max: 2, per: 1m}\n"),
    ("acme", "off"): wf("off", "{type: webhook}", SET, enabled=False),
    ("acme", "greet"): wf("greet", "{type: manual, entities: [ticket, deal]}", SET),
    ("acme", "slow"): wf("slow", "{type: manual, entities: [ticket]}", WAIT),
    ("acme", "on-ticket"): wf("on-ticket", "{type: record, entity: ticket, events: [created, updated, deleted]}",
                              "    - {id: seen, type: set, vars: {title: '{{ record.title | default(1) }}'}}\n"),
    ("acme", "inbox"): wf("inbox", "{type: email, mailbox: 'mailbox:mb_support'}",
                          "    - {id: note, type: set, vars: {subject: '{{ trigger.subject }}'}}\n"),
    ("globex", "intake"): wf("intake", "{type: webhook}", SET),
}


@contextmanager
def http_kit(tmp_path: Path, store_url: str, *, ensure: bool = True, config: Config | None = None,
             **app_options: Any) -> Iterator[Http]:
    """A synced repository of the WORKFLOWS, acme's directory loaded, and an app over it (its engine
    under ``config``, by default the kits' own: 127.0.0.1 allowed)."""
    with kit(tmp_path, store_url, **({"config": config} if config is not None else {})) as k:
        k.commit({WF.format(account, name): text for (account, name), text in WORKFLOWS.items()}, "add workflows")
        k.sync()
        k.directory()
        environ = {secrets.KEY_ENV: Fernet.generate_key().decode(), "WFC_GIT_WEBHOOK_SECRET": GIT_SECRET}
        settings = Settings(repo=str(k.path), data_dir=k.data_dir, database_url=store_url)
        box = secrets.SecretBox(environ[secrets.KEY_ENV])
        if ensure:
            secrets.ensure_webhook_secrets(k.store, box, k.clock.now())
        app = create_app(settings, k.store, k.engine, environ={**environ, **app_options.pop("environ", {})},
                         **app_options)
        yield Http(k, app, app.test_client(), box, settings, environ)


class Http:
    def __init__(self, kit: Kit, app: Flask, client: FlaskClient, box: secrets.SecretBox, settings: Settings,
                 environ: dict[str, str]):
        self.kit = kit
        self.environ = environ  # WFC_SECRET_KEY and the git hook's secret the app was made with
        self.app = app
        self.client = client
        self.box = box
        self.settings = settings
        self._secrets: dict[str, str] = {}
        self._admin: str | None = None

    def token(self, *permissions: str, account: str = "acme", user: str = "u_alice", name: str | None = None) -> str:
        with self.kit.store.tx() as conn:
            return tokens.create(conn, account, user, permissions, self.kit.clock.now(), name=name).bearer

    def admin(self) -> str:
        """One admin token of acme for the whole test."""
        if self._admin is None:
            self._admin = self.token("admin")
        return self._admin

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def secret(self, key: str) -> str:
        """The workflow's secret, rotated once here so the test knows it."""
        if key not in self._secrets:
            with self.kit.store.tx() as conn:
                self._secrets[key] = secrets.rotate(conn, self.box, key, actor="test", now=self.kit.clock.now()).secret
        return self._secrets[key]

    def signed(self, key: str, body: bytes, *, secret: str | None = None, at: int | None = None) -> dict[str, str]:
        timestamp = int(self.kit.clock.now().timestamp()) if at is None else at
        return {"X-Wfc-Timestamp": str(timestamp), "X-Wfc-Signature": sign(secret or self.secret(key), timestamp, body),
                "Content-Type": "application/json"}

    def hook(self, key: str, payload: Any = None, *, body: bytes | None = None, **signing: Any) -> TestResponse:
        raw = json.dumps(payload).encode() if body is None else body
        return self.client.post(f"/hooks/{key}", data=raw, headers=self.signed(key, raw, **signing))

    def executions(self) -> int:
        from sqlalchemy import func, select

        from controller.store.tables import executions

        with self.kit.store.read() as conn:
            return int(conn.execute(select(func.count()).select_from(executions)).scalar_one())
