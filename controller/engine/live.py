"""The effects that act: mail through SMTP or into an outbox folder, HTTP calls, record writes.

Failures are sorted by what a retry could change: connection refused, timeouts, SMTP 4xx and HTTP
429/5xx raise :class:`TransientError` (retried under the action's ``retry``); everything else raises
:class:`ExecutionError` and fails the step. Messages never show a secret: not the SMTP password,
not a chat webhook's URL (its path is the credential), not a URL's query or user info. Every HTTP
call goes through the outbound-call guard (:mod:`controller.outbound`): the account's
policy decides what it may reach, how large its answer and how long it may take.
"""

from __future__ import annotations

import codecs
import json
import os
import smtplib
import ssl
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from controller.engine.effects import HttpCall
from controller.errors import ConflictError, ExecutionError, NotFoundError, TransientError
from controller.model.entries import DirectoryEntry
from controller.outbound import OutboundClient, masked_headers, shown_url

TEXT_LIMIT = 64 * 1024  # bytes of a non-JSON response body kept in the step's output
_SHOWN = 200  # characters of an error response quoted in a message


class RecordWriter(Protocol):
    """The record store as the effects see it (the built-in store or the host application)."""

    def create(self, account: str, entity: str, data: dict[str, Any]) -> dict[str, Any]:
        """Create a record of ``entity``; return it as stored (``{"id", "type", ...fields}``)."""
        ...

    def update(self, account: str, entity: str, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """Merge ``data`` into the record; return it after the change. NotFoundError if it is missing."""
        ...


@dataclass(frozen=True)
class SmtpSettings:
    """A mailbox's ``smtp`` map: where to connect and how to log in."""

    host: str
    port: int
    starttls: bool = False
    ssl: bool = False
    username: str = ""
    password_env: str = ""

    @classmethod
    def of(cls, mailbox: DirectoryEntry) -> SmtpSettings:
        data = mailbox.data.get("smtp")
        if not isinstance(data, Mapping) or not data.get("host"):
            raise ExecutionError(f"{mailbox.ref} is an smtp mailbox without smtp.host; set its smtp settings "
                                 f"in the directory")
        use_ssl, starttls = bool(data.get("ssl")), bool(data.get("starttls"))
        port = data.get("port") or (465 if use_ssl else 587 if starttls else 25)
        return cls(host=str(data["host"]), port=int(port), starttls=starttls, ssl=use_ssl,
                   username=str(data.get("username") or ""), password_env=str(data.get("password_env") or ""))


class LiveEffects:
    """:class:`~controller.engine.effects.Effects` that really send, call and write.

    ``environ`` is where SMTP passwords are read (``smtp.password_env`` names the variable).
    ``http`` makes the HTTP calls under the account's outbound policy; without one, under the
    default policy (public addresses only). Its session keeps no cookies, so that one workflow's
    calls never carry another's.
    """

    def __init__(self, *, data_dir: Path, records: RecordWriter, environ: Mapping[str, str] = os.environ,
                 http: OutboundClient | None = None, smtp_timeout: float = 30.0,
                 channel_timeout: float = 30.0) -> None:
        self._data_dir = Path(data_dir)
        self._records = records
        self._environ = environ
        self._http = http or OutboundClient()
        self._smtp_timeout = smtp_timeout
        self._channel_timeout = channel_timeout

    # -- mail ---------------------------------------------------------------------------------------

    def send_email(self, account: str, mailbox: DirectoryEntry, message: EmailMessage) -> dict[str, Any]:
        """Deliver by the mailbox's ``kind``: ``outbox`` (the default) writes an .eml, ``smtp`` sends."""
        kind = mailbox.data.get("kind") or "outbox"
        if kind == "outbox":
            return {**_summary(message), "path": str(self._write_outbox(account, mailbox, message))}
        if kind == "smtp":
            refused = self._send_smtp(mailbox, message)
            return {**_summary(message), **({"refused": refused} if refused else {})}
        raise ExecutionError(f"{mailbox.ref} has kind {kind!r}; use smtp or outbox")

    def _write_outbox(self, account: str, mailbox: DirectoryEntry, message: EmailMessage) -> Path:
        folder = self._data_dir / "outbox" / _path_part(account, "account") / _path_part(mailbox.id, mailbox.ref)
        # One file per Message-ID (deterministic per step): a repeated attempt replaces its file.
        key = _file_key(str(message["Message-ID"] or "")) or uuid.uuid4().hex
        partial = folder / f"{key}.eml.part"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = next(folder.glob(f"*-{key}.eml"), None) or folder / f"{_stamp(message)}-{key}.eml"
            partial.write_bytes(message.as_bytes())
            partial.replace(path)  # whoever reads the outbox never sees half a message
        except OSError as error:
            raise ExecutionError(f"cannot write {partial.with_suffix('')} for {mailbox.ref}: "
                                 f"{error.strerror or error}") from error
        return path

    def _send_smtp(self, mailbox: DirectoryEntry, message: EmailMessage) -> dict[str, Any]:
        settings = SmtpSettings.of(mailbox)
        password = self._password(mailbox, settings)
        where = f"{mailbox.ref} via {settings.host}:{settings.port}"
        try:
            with self._connect(settings) as smtp:
                if settings.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if settings.username:
                    smtp.login(settings.username, password)
                refused = smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as error:
            raise _smtp_failure(error, where, settings) from error
        # Some recipients refused, the others accepted: the mail went out, so the step succeeds.
        return {address: f"{code} {_text(reply)}" for address, (code, reply) in refused.items()}

    def _connect(self, settings: SmtpSettings) -> smtplib.SMTP:
        if settings.ssl:
            return smtplib.SMTP_SSL(settings.host, settings.port, timeout=self._smtp_timeout,
                                    context=ssl.create_default_context())
        return smtplib.SMTP(settings.host, settings.port, timeout=self._smtp_timeout)

    def _password(self, mailbox: DirectoryEntry, settings: SmtpSettings) -> str:
        if not settings.username:
            return ""
        if not settings.password_env:
            raise ExecutionError(f"{mailbox.ref} logs in as {settings.username!r} but sets no "
                                 f"smtp.password_env; name the environment variable holding the password")
        password = self._environ.get(settings.password_env)
        if password is None:
            raise ExecutionError(f"the environment variable {settings.password_env} (the SMTP password of "
                                 f"{mailbox.ref}) is not set; set it where the controller runs")
        return password

    # -- HTTP ---------------------------------------------------------------------------------------

    def post_channel(self, account: str, channel: DirectoryEntry, payload: dict[str, Any],
                     headers: dict[str, str] | None = None) -> dict[str, Any]:
        """POST the payload to the channel's webhook; 2xx is success."""
        url = str(channel.data.get("webhook_url") or "")
        if urlsplit(url).scheme not in ("http", "https"):
            raise ExecutionError(f"{channel.ref} has no http(s) webhook_url; set it in the directory")
        # The webhook's path is its credential: name the channel and host, never the URL.
        what = f"{channel.ref} (webhook at {urlsplit(url).hostname})"
        status, _, content = self._exchange(what, "POST", url, timeout=self._channel_timeout, json=payload,
                                            headers=headers or {}, label=what)
        if not 200 <= status < 300:
            raise _status_failure(what, status, f"expected 2xx; {_snippet(content)}")
        return {"status": status}

    def http_request(self, call: HttpCall) -> dict[str, Any]:
        """Make the call; a status outside ``expect_status`` (by default: outside 2xx) fails the step."""
        what = f"{call.method} {shown_url(call.url)}"
        extra: dict[str, Any] = {}
        if call.json is not None:
            extra["json"] = call.json
        elif call.body is not None:
            extra["data"] = call.body.encode("utf-8")
        status, headers, content = self._exchange(what, call.method, call.url, timeout=call.timeout,
                                                  headers=call.headers, **extra)
        accepted = status in call.expect_status if call.expect_status else 200 <= status < 300
        if not accepted:
            expected = ", ".join(map(str, call.expect_status)) if call.expect_status else "2xx"
            raise _status_failure(what, status, f"expected {expected}; {_snippet(content)}")
        return {"status": status, "headers": masked_headers(headers), **_body_output(headers, content)}

    def _exchange(self, what: str, method: str, url: str, *, timeout: float,
                  **kwargs: Any) -> tuple[int, dict[str, str], tuple[bytes, str]]:
        """Status, headers and (body, encoding) of one call through the guard; transport errors sorted."""
        try:
            answer = self._http.request(method, url, timeout=timeout, **kwargs)
            return answer.status, answer.headers, (answer.body, answer.encoding)
        except (requests.ConnectionError, requests.Timeout) as error:
            failure = "timeout" if isinstance(error, requests.Timeout) else "network"
            raise TransientError(f"{what}: {_transport_reason(error)}", failure=failure) from error
        except requests.RequestException as error:
            raise ExecutionError(f"{what}: {_transport_reason(error)}") from error

    # -- records ------------------------------------------------------------------------------------

    def create_record(self, account: str, entity: str, data: dict[str, Any]) -> dict[str, Any]:
        """Create through the record writer."""
        with _record_errors(f"creating a {entity}"):
            return self._records.create(account, entity, data)

    def update_record(self, account: str, entity: str, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """Update through the record writer; a missing record fails the step."""
        with _record_errors(f"updating {entity} {record_id}"):
            return self._records.update(account, entity, record_id, data)


@contextmanager
def _record_errors(what: str) -> Iterator[None]:
    """Turn the record store's answers into step failures: missing -> failed, conflict -> retry."""
    try:
        yield
    except NotFoundError as error:
        raise ExecutionError(f"{what}: {error}") from error
    except ConflictError as error:
        raise TransientError(f"{what}: {error}") from error


# -- helpers ----------------------------------------------------------------------------------------


def _summary(message: EmailMessage) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "message_id": str(message["Message-ID"] or ""),
        "from": str(message["From"] or ""),
        "to": _addresses(message, "To"),
        "subject": str(message["Subject"] or ""),
    }
    if message["Cc"]:
        summary["cc"] = _addresses(message, "Cc")
    return summary


def _addresses(message: EmailMessage, header: str) -> list[str]:
    return [address for _, address in getaddresses(message.get_all(header, [])) if address]


def _file_key(message_id: str) -> str:
    """A Message-ID as a file name part: its local part, letters, digits, ``-`` and ``_`` only."""
    local = message_id.strip("<> ").partition("@")[0]
    return "".join(c for c in local if c.isascii() and (c.isalnum() or c in "-_"))[:100]


def _path_part(name: str, what: str) -> str:
    # Account and mailbox ids become folder names; "." , ".." or a slash would leave the outbox.
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ExecutionError(f"{what}: {name!r} cannot be used as a folder name in the outbox")
    return name


def _stamp(message: EmailMessage) -> str:
    """The message's Date as ``YYYYmmddTHHMMSSZ``, so that an outbox folder lists in time order."""
    try:
        when = parsedate_to_datetime(str(message["Date"]))
    except (TypeError, ValueError):
        when = datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _smtp_failure(error: BaseException, where: str, settings: SmtpSettings) -> ExecutionError:
    """The step error for an SMTP failure: 4xx, lost connections and timeouts are worth a retry."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        listed = "; ".join(f"{a}: {c} {_text(r)}" for a, (c, r) in error.recipients.items())
        kind = TransientError if codes and all(400 <= c < 500 for c in codes) else ExecutionError
        return kind(f"{where}: every recipient was refused ({listed})", failure="smtp")
    if isinstance(error, smtplib.SMTPResponseException):
        reply = f"{error.smtp_code} {_text(error.smtp_error)}"
        if 400 <= error.smtp_code < 500:
            return TransientError(f"{where}: the server answered {reply}; will retry", failure="smtp")
        if isinstance(error, smtplib.SMTPAuthenticationError):
            return ExecutionError(f"{where}: login as {settings.username!r} was refused ({reply}); check the "
                                  f"password in ${settings.password_env}", failure="smtp")
        return ExecutionError(f"{where}: the server refused the message ({reply})", failure="smtp")
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return ExecutionError(f"{where}: {error}; change the mailbox's smtp settings (starttls, username)",
                              failure="smtp")
    if isinstance(error, ssl.SSLCertVerificationError):
        return ExecutionError(f"{where}: the server's TLS certificate is not trusted ({error.verify_message})",
                              failure="smtp")
    # SMTPException derives from OSError; only a lost connection or a socket error is transient.
    if isinstance(error, smtplib.SMTPServerDisconnected) or not isinstance(error, smtplib.SMTPException):
        return TransientError(f"{where}: {_os_reason(error)}", failure="smtp")
    return ExecutionError(f"{where}: {error}", failure="smtp")


def _status_failure(what: str, status: int, detail: str) -> ExecutionError:
    if status == 429 or status >= 500:
        return TransientError(f"{what} answered {status}, {detail}", failure="http_5xx")
    return ExecutionError(f"{what} answered {status}, {detail}", failure="http_4xx")


def _body_output(headers: Mapping[str, str], content: tuple[bytes, str]) -> dict[str, Any]:
    """``{"json": …}`` for a JSON body, else ``{"text": …}`` capped at TEXT_LIMIT bytes."""
    body, encoding = content
    media_type = _media_type(headers)
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            return {"json": json.loads(body)}
        except ValueError:
            pass  # a server that says JSON and sends something else: keep what it sent, as text
    text = _decode(body[:TEXT_LIMIT], encoding)
    return {"text": text, "truncated": True} if len(body) > TEXT_LIMIT else {"text": text}


def _media_type(headers: Mapping[str, str]) -> str:
    for name, value in headers.items():
        if name.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower()
    return ""


def _decode(data: bytes, encoding: str) -> str:
    try:
        decoder = codecs.getincrementaldecoder(encoding or "utf-8")(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # final=False drops a character the byte cap cut in half instead of showing garbage.
    return str(decoder.decode(data, final=False))


def _snippet(content: tuple[bytes, str]) -> str:
    text = " ".join(_decode(content[0][: _SHOWN * 4], content[1]).split())
    if not text:
        return "empty body"
    return f"body: {text[:_SHOWN]}" + ("\u2026" if len(text) > _SHOWN else "")


def _transport_reason(error: BaseException) -> str:
    if isinstance(error, requests.Timeout):
        return "timed out"
    return _os_reason(error)


def _os_reason(error: BaseException) -> str:
    """The innermost operating-system reason (``connection refused``), else the error's own text."""
    seen: BaseException | None = error
    for _ in range(10):  # requests and urllib3 wrap the socket error a few levels deep
        if seen is None:
            break
        if type(seen).__module__ == "builtins" and isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        if isinstance(seen, TimeoutError):
            return "timed out"
        reason = getattr(seen, "reason", None)
        seen = reason if isinstance(reason, BaseException) else seen.__cause__ or seen.__context__
    return str(error) or type(error).__name__


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
