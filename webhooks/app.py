"""The app factory: one Flask app over one store and engine; nothing is bound at import time."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from flask import Flask
from werkzeug.routing import IntegerConverter, Map

from controller.engine.clock import Clock
from controller.engine.runtime import Engine
from controller.metrics import prom
from controller.model.ids import ID_MAX
from controller.security.intake import WebhookIntake
from controller.security.secrets import KEY_ENV, SecretBox
from controller.settings import Settings
from controller.store import Store
from webhooks import errors, health, hooks, metrics, ui
from webhooks.api import blueprint as api_blueprint
from webhooks.bodies import REQUEST_LIMIT
from webhooks.context import EXTENSION, Services, SyncTrigger


def create_app(settings: Settings, store: Store, engine: Engine, *, controller: SyncTrigger | None = None,
               clock: Clock | None = None, environ: Mapping[str, str] | None = None) -> Flask:
    """The HTTP service over ``store`` and ``engine``.

    ``controller`` (anything with ``sync_now()``, e.g. :class:`controller.service.Controller`)
    receives git push hooks; without it ``POST /hooks/git`` answers 503. ``clock`` (default: the
    engine's) checks webhook timestamps and rate-limit windows. ``environ`` (default ``os.environ``)
    supplies ``WFC_SECRET_KEY`` (else ``<data-dir>/secret.key`` is used, made once with mode 0600)
    and ``WFC_GIT_WEBHOOK_SECRET`` (the push hook's secret; unset: the push hook answers 404), and
    ``WFC_METRICS_TOKEN`` (unset: ``/metrics`` needs no token).
    """
    env = os.environ if environ is None else environ
    box = SecretBox.load(settings.data_dir, env.get(KEY_ENV))
    intake = WebhookIntake(engine, box, clock=clock)
    found = Services(settings=settings, store=store, engine=engine, clock=intake.clock, box=box, intake=intake,
                     controller=controller, git_secret=env.get(hooks.GIT_SECRET_ENV) or None, environ=env)
    prom.instrument(engine)
    app = Flask("webhooks", static_folder=None)
    app.url_map.converters["id"] = RowId  # before the blueprints' rules are bound
    app.config["MAX_CONTENT_LENGTH"] = REQUEST_LIMIT
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION] = found
    errors.init_app(app)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(hooks.blueprint)
    app.register_blueprint(metrics.blueprint)
    app.register_blueprint(ui.blueprint)
    app.secret_key = box.derive("console session")
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_NAME="wfctl_ui",
                      SESSION_COOKIE_SECURE=env.get("WFC_CONSOLE_SECURE_COOKIE", "") == "1")
    app.register_blueprint(api_blueprint)
    app.wsgi_app = hooks.FastHooks(app.wsgi_app, found)  # type: ignore[method-assign]
    return app


class RowId(IntegerConverter):
    """``<id:name>``: a row id in a path, 1 to the store's ID_MAX; anything else matches no route (404)."""

    def __init__(self, map: Map) -> None:
        super().__init__(map, min=1, max=ID_MAX)


def from_environ(environ: Mapping[str, str] | None = None) -> Flask:
    """An app configured like ``wfctl`` from ``WFC_*`` variables, for WSGI servers such as gunicorn::

        gunicorn -w 4 -b 0.0.0.0:8080 'webhooks:from_environ()'

    It serves HTTP only: run ``wfctl serve`` beside it for the reconciler, scheduler and workers.
    """
    env = os.environ if environ is None else environ
    config = env.get("WFC_CONFIG")
    settings = Settings(repo=env.get("WFC_REPO", "."), branch=env.get("WFC_BRANCH") or None,
                        root=env.get("WFC_ROOT", "workflows.d"), database_url=env.get("WFC_DATABASE_URL") or None,
                        data_dir=Path(env.get("WFC_DATA_DIR", ".wfctl")), config_path=Path(config) if config else None)
    store = settings.open_store()
    return create_app(settings, store, settings.engine(store), environ=env)
