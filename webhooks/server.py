"""Serving the app with waitress in a background thread: what `wfctl serve` and the tests start.

    handle = start_server(create_app(settings, store, engine), "127.0.0.1", 8080)
    ...
    handle.stop()

Port 0 picks a free port (``handle.port``). ``stop()`` closes the listening socket, waits for the
worker threads to finish the requests they are in, then closes every connection; stopping twice
is harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

log = logging.getLogger(__name__)

MAX_BODY = 32 * 1024 * 1024  # waitress refuses bigger bodies itself (the app's own limits are lower)
POLL_SECONDS = 0.05  # how soon the loop notices stop()


@dataclass
class ServerHandle:
    host: str
    port: int
    _server: Any
    _thread: threading.Thread
    _stopping: threading.Event

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, let in-flight requests finish (at most ``timeout`` s), close every connection."""
        self._stopping.set()
        self._thread.join(timeout + 2)
        log.info("HTTP service on %s stopped", self.url)


def start_server(app: Any, host: str = "127.0.0.1", port: int = 8080, *, threads: int = 4,
                 **adjustments: Any) -> ServerHandle:
    """Serve ``app`` on ``host:port`` from a daemon thread; returns once the socket listens."""
    options = {"threads": threads, "ident": "wfctl", "max_request_body_size": MAX_BODY, "asyncore_use_poll": True,
               "connection_limit": 1000, "clear_untrusted_proxy_headers": True, **adjustments}
    server = create_server(app, host=host, port=port, **options)
    stopping = threading.Event()
    thread = threading.Thread(target=_run, args=(server, stopping), name=f"http-{server.effective_port}", daemon=True)
    thread.start()
    log.info("HTTP service listening on http://%s:%s (%d threads)", host, server.effective_port, threads)
    return ServerHandle(host, int(server.effective_port), server, thread, stopping)


def _run(server: Any, stopping: threading.Event, drain: float = 5.0) -> None:
    """waitress's loop, with a way out: every socket is closed by this thread, after the request
    threads are done, so nothing writes to a descriptor that another thread closed."""
    try:
        while not stopping.is_set():
            wasyncore.loop(timeout=POLL_SECONDS, map=server._map, use_poll=True, count=1)
        wasyncore.dispatcher.close(server)  # the listening socket only (server.close() closes the trigger too)
        deadline = time.monotonic() + drain
        while _busy(server.task_dispatcher) and time.monotonic() < deadline:
            wasyncore.loop(timeout=POLL_SECONDS, map=server._map, use_poll=True, count=1)
    except Exception:  # the loop must not take the process with it; what it did is logged
        log.exception("HTTP service loop failed")
    finally:
        server.task_dispatcher.shutdown(timeout=drain)
        wasyncore.close_all(server._map, ignore_all=True)


def _busy(dispatcher: Any) -> bool:
    with dispatcher.lock:
        return bool(dispatcher.queue) or dispatcher.active_count > 0
