"""Serving the app with waitress in a background thread: what `wfctl serve` and the tests start.

    handle = start_server(create_app(settings, store, engine), "127.0.0.1", 8080)
    ...
    handle.stop()

Port 0 picks a free port (``handle.port``). ``stop()`` closes the listening socket and every
connection, then waits for the worker threads to finish the requests they are in.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

log = logging.getLogger(__name__)

MAX_BODY = 32 * 1024 * 1024  # waitress refuses bigger bodies itself (the app's own limits are lower)


@dataclass
class ServerHandle:
    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close connections, let in-flight requests finish (at most ``timeout`` s)."""
        if not self._thread.is_alive():
            return
        server = self._server
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map, ignore_all=True))
        self._thread.join(timeout)
        server.task_dispatcher.shutdown(timeout=timeout)
        log.info("HTTP service on %s stopped", self.url)


def start_server(app: Any, host: str = "127.0.0.1", port: int = 8080, *, threads: int = 4,
                 **adjustments: Any) -> ServerHandle:
    """Serve ``app`` on ``host:port`` from a daemon thread; returns once the socket listens."""
    options = {"threads": threads, "ident": "wfctl", "max_request_body_size": MAX_BODY, "asyncore_use_poll": True,
               "connection_limit": 1000, "clear_untrusted_proxy_headers": True, **adjustments}
    server = create_server(app, host=host, port=port, **options)
    thread = threading.Thread(target=server.run, name=f"http-{server.effective_port}", daemon=True)
    thread.start()
    log.info("HTTP service listening on http://%s:%s (%d threads)", host, server.effective_port, threads)
    return ServerHandle(host, int(server.effective_port), server, thread)
