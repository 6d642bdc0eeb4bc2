"""Real servers on 127.0.0.1 for tests: an SMTP server (aiosmtpd) and an HTTP server (stdlib).

Both are context managers that start a server on a free loopback port, record what arrives and
stop the server on exit::

    with smtp_server(auth=("support", "s3cret")) as smtp:
        ...  # send to smtp.host:smtp.port
        assert smtp.messages[0].message["Subject"] == "Hello"

    with http_server() as web:
        web.respond("/hooks", status=503, json={"error": "down"})
        ...  # call web.url + "/hooks"
        assert web.requests[0].json == {...}
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from controller.config import Config
from controller.outbound import OutboundPolicy

HOST = "127.0.0.1"

# The outbound-call guard refuses loopback unless the configuration allows it; these servers live
# there, so the kits allow 127.0.0.1 (and only it) explicitly: as a policy, a Config, or config text.
LOOPBACK = OutboundPolicy.of([HOST])
ALLOW_LOOPBACK = f"outbound:\n  allow: ['{HOST}']\n"


def loopback_config() -> Config:
    """The default configuration, with calls to 127.0.0.1 allowed."""
    return Config(outbound_policies={"": LOOPBACK})


def ready(url: str) -> bool:
    """Whether the service at ``url`` (``http://127.0.0.1:<port>``) answers ``/readyz`` with 200 (not yet up: False)."""
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the moment of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def until(check: Callable[[], Any], timeout: float = 30.0, poll: float = 0.05) -> Any:
    """Poll ``check`` until it gives something true (returned); AssertionError after ``timeout`` seconds.

    For what runs in other threads or processes (a served app, `wfctl serve`), where fake time cannot reach.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:g}s")


# -- SMTP -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    """One message the SMTP server accepted: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    login: str | None  # the user that authenticated, if any


@dataclass
class SmtpServer:
    """A running SMTP server. Set ``reply`` (e.g. ``"451 4.3.0 try later"``) to answer DATA with it."""

    host: str
    port: int
    messages: list[ReceivedMail] = field(default_factory=list)
    reply: str = "250 OK"
    failed_logins: list[str] = field(default_factory=list)


class _Collector:
    """The aiosmtpd handler: keeps every message, answers DATA with the server's ``reply``."""

    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if not self._server.reply.startswith("2"):
            return self._server.reply
        raw = envelope.original_content or b""
        # SMTP carries CRLF line ends; a mail client reading the message sees plain "\n".
        message = cast(EmailMessage, message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=policy.default))
        login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else None
        self._server.messages.append(ReceivedMail(
            mail_from=envelope.mail_from or "", rcpt_tos=list(envelope.rcpt_tos), message=message, raw=raw,
            login=login))
        return self._server.reply


class _Authenticator:
    """Accepts exactly one username and password (PLAIN or LOGIN), like a real relay would."""

    def __init__(self, server: SmtpServer, username: str, password: str) -> None:
        self._server = server
        self._username = username
        self._password = password

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        if (login, password) == (self._username, self._password):
            return AuthResult(success=True, auth_data=auth_data.login)
        self._server.failed_logins.append(login)
        return AuthResult(success=False, handled=False)


class _Controller(Controller):
    """aiosmtpd's controller, without its warning about AUTH over plain text (intended here)."""

    def factory(self) -> SMTP:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
            return super().factory()


@contextmanager
def smtp_server(*, auth: tuple[str, str] | None = None) -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 without TLS; with ``auth`` it requires that login before MAIL."""
    server = SmtpServer(host=HOST, port=free_port())
    options: dict[str, Any] = {}
    if auth is not None:
        options = {"authenticator": _Authenticator(server, *auth), "auth_required": True,
                   "auth_require_tls": False}
    controller = _Controller(_Collector(server), hostname=HOST, port=server.port, **options)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


# -- HTTP -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request the HTTP server received."""

    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Response:
    """What the server answers on one path."""

    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


@dataclass
class HttpServer:
    """A running HTTP server: ``url`` is ``http://127.0.0.1:<port>``; ``requests`` what came in."""

    url: str
    requests: list[RecordedRequest] = field(default_factory=list)
    routes: dict[str, Response] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def respond(self, path: str, status: int = 200, *, json_body: Any = None, text: str | None = None,
                headers: dict[str, str] | None = None) -> None:
        """Answer requests to ``path`` (without query) with ``status`` and a JSON or text body."""
        if text is not None:
            response = Response(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})
        else:
            body = json.dumps({"ok": True} if json_body is None else json_body).encode()
            response = Response(status, body, {"Content-Type": "application/json"})
        response.headers.update(headers or {})
        with self.lock:
            self.routes[path] = response

    def answer(self, path: str) -> Response:
        with self.lock:
            return self.routes.get(path.split("?", 1)[0], Response())


def _handler(server: HttpServer) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``server`` (a class per server: no shared state)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real services answer

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with server.lock:
                server.requests.append(RecordedRequest(self.command, self.path, dict(self.headers), body))
            response = server.answer(self.path)
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # pytest shows output of failing tests only; request lines would drown it

    return Handler


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client killed mid-request (kill -9 tests)
            super().handle_error(request, client_address)


@contextmanager
def http_server(tls: ssl.SSLContext | None = None) -> Iterator[HttpServer]:
    """An HTTP server on 127.0.0.1 in a thread; every path answers 200 ``{"ok": true}`` until told.
    With ``tls`` (a server context holding its certificate) it speaks HTTPS."""
    server = HttpServer(url="")
    httpd = _QuietServer((HOST, 0), _handler(server))
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    server.url = f"{scheme}://{HOST}:{httpd.server_address[1]}"  # known once the socket is bound
    # A short poll interval: shutdown() waits up to one interval, in every test that uses the server.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), name="test-http-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def stop(processes: list[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """SIGTERM every process, then wait for each (a clean stop), killing one that outlasts ``timeout``."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def children(pid: int, mark: bytes = b"") -> list[int]:
    """The child processes of ``pid`` whose command line holds ``mark`` (Linux: read off /proc)."""
    found, listed = [], set()
    for task in Path(f"/proc/{pid}/task").iterdir():  # each thread lists the children it started
        try:
            listed.update((task / "children").read_text().split())
        except OSError:  # the thread ended meanwhile
            pass
    for child in listed:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:  # it ended meanwhile
            continue
        if mark in cmdline:
            found.append(int(child))
    return found
