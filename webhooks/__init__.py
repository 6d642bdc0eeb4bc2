"""The HTTP layer of wfctl (Flask): signed webhooks, git push hooks, the JSON API, health probes.

    app = create_app(settings, store, engine, controller=controller)
    handle = start_server(app, "127.0.0.1", 8080)

It only calls into ``controller``; nothing in ``controller`` imports it. Modules::

    app        create_app (the factory) and from_environ (for gunicorn)
    hooks      POST /hooks/<account>/<name> (signed webhooks), POST /hooks/git (push -> reconcile now)
    api/       /api/v1: workflows, executions, accounts (records, events, mail, directory)
    health     /healthz, /readyz
    auth       bearer tokens and permissions
    errors     every error as {"error": {"code", "message"}}
    openapi    the OpenAPI 3.1 document (/api/v1/openapi.json)
    server     start_server: waitress in a thread
"""

from webhooks.app import create_app, from_environ
from webhooks.server import ServerHandle, start_server

__all__ = ["ServerHandle", "create_app", "from_environ", "start_server"]
