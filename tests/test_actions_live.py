"""The effectful actions over LiveEffects, against real SMTP and HTTP servers on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import pytest
from servers import HOST, LOOPBACK, HttpServer, SmtpServer, free_port, http_server, smtp_server

from controller.engine.actions import channel_post, email_send, http_request, record_create, record_update
from controller.engine.actions.base import ActionContext, Done, Outcome
from controller.engine.effects import HttpCall
from controller.engine.live import LiveEffects
from controller.errors import ExecutionError, NotFoundError, TransientError
from controller.model.entries import DirectoryEntry
from controller.outbound import OutboundClient

ACCOUNT = "acme"
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SMTP_LOGIN = ("support", "s3cret-pw")


class MemoryDirectory:
    """The account directory as a dict of ``(account, ref) -> entry``."""

    def __init__(self, *entries: DirectoryEntry) -> None:
        self.entries = {(ACCOUNT, entry.ref): entry for entry in entries}

    def get(self, account: str, ref: str) -> DirectoryEntry | None:
        return self.entries.get((account, ref))

    def add(self, entry: DirectoryEntry) -> None:
        self.entries[(ACCOUNT, entry.ref)] = entry


class MemoryRecords:
    """A record store in a dict, implementing the RecordWriter protocol."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str, str], dict[str, Any]] = {}

    def create(self, account: str, entity: str, data: dict[str, Any]) -> dict[str, Any]:
        record = {**data, "id": f"r{len(self.records) + 1}", "type": entity}
        self.records[(account, entity, record["id"])] = record
        return dict(record)

    def update(self, account: str, entity: str, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        key = (account, entity, record_id)
        if key not in self.records:
            raise NotFoundError(f"{entity} {record_id} does not exist in account {account!r}")
        self.records[key].update(data)
        return dict(self.records[key])


def user(user_id: str, email: str, **extra: Any) -> DirectoryEntry:
    return DirectoryEntry("user", user_id, name=user_id.removeprefix("u_").title(), data={"email": email},
                          **extra)


def base_directory() -> MemoryDirectory:
    return MemoryDirectory(
        user("u_alice", "alice@acme.test"),
        user("u_bob", "bob@acme.test"),
        DirectoryEntry("user", "u_ghost", name="Ghost"),
        DirectoryEntry("mailbox", "mb_sales", name="Acme Sales", data={"address": "sales@acme.test"}),
        DirectoryEntry("mailbox", "mb_old", name="Old", status="deactivated",
                       data={"address": "old@acme.test", "kind": "outbox"}),
        DirectoryEntry("object_type", "ot_billing_case", name="Billing case"),
        DirectoryEntry("object_type", "ot_gone", name="Gone", status="deleted"),
    )


@pytest.fixture
def directory() -> MemoryDirectory:
    return base_directory()


@pytest.fixture
def records() -> MemoryRecords:
    return MemoryRecords()


@pytest.fixture
def effects(tmp_path: Path, records: MemoryRecords) -> LiveEffects:
    return LiveEffects(data_dir=tmp_path, records=records, http=OutboundClient(LOOPBACK), environ={"ACME_SMTP_PASSWORD": SMTP_LOGIN[1]})


@pytest.fixture
def ctx(directory: MemoryDirectory, effects: LiveEffects) -> ActionContext:
    return ActionContext(account=ACCOUNT, workflow="acme/escalate", action_id="step", now=NOW,
                         directory=directory, effects=effects)


@pytest.fixture
def smtp(directory: MemoryDirectory) -> Iterator[SmtpServer]:
    with smtp_server(auth=SMTP_LOGIN) as server:
        directory.add(smtp_mailbox(server.port))
        yield server


@pytest.fixture
def web() -> Iterator[HttpServer]:
    with http_server() as server:
        yield server


def smtp_mailbox(port: int, **smtp: Any) -> DirectoryEntry:
    settings = {"host": HOST, "port": port, "starttls": False, "ssl": False, "username": SMTP_LOGIN[0],
                "password_env": "ACME_SMTP_PASSWORD", **smtp}
    return DirectoryEntry("mailbox", "mb_support", name="Acme Support",
                          data={"address": "support@acme.test", "kind": "smtp", "smtp": settings})


def output(outcome: Outcome) -> dict[str, Any]:
    assert isinstance(outcome, Done)
    return outcome.output


def mail(**inputs: Any) -> dict[str, Any]:
    return {"id": "mail", "type": "email.send", "mailbox": "mailbox:mb_support", "to": "user:u_alice",
            "subject": "Urgent: printer", "body": "It is on fire.\n", **inputs}


# -- email.send -------------------------------------------------------------------------------------


def test_email_through_smtp_with_login(smtp: SmtpServer, ctx: ActionContext) -> None:
    """email.send logs in with the password from the named variable and delivers the built message."""
    result = output(email_send.run(mail(cc=["carol@example.test", "user:u_bob"], retry=None), ctx))

    [received] = smtp.messages
    assert received.login == "support"
    assert received.mail_from == "support@acme.test"
    assert received.rcpt_tos == ["alice@acme.test", "carol@example.test", "bob@acme.test"]
    message = received.message
    assert message["From"] == "Acme Support <support@acme.test>"
    assert message["To"] == "Alice <alice@acme.test>"
    assert message["Cc"] == "carol@example.test, Bob <bob@acme.test>"
    assert message["Subject"] == "Urgent: printer"
    assert message["Date"].datetime == NOW
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "It is on fire.\n"
    assert result == {"message_id": message["Message-ID"], "from": "Acme Support <support@acme.test>",
                      "to": ["alice@acme.test"], "cc": ["carol@example.test", "bob@acme.test"],
                      "subject": "Urgent: printer"}
    assert result["message_id"].endswith("@acme.test>")


def test_email_wrong_password_is_permanent(smtp: SmtpServer, ctx: ActionContext, tmp_path: Path,
                                           records: MemoryRecords) -> None:
    """A refused login fails the step (no retry) and points at the password variable."""
    wrong = LiveEffects(data_dir=tmp_path, records=records, http=OutboundClient(LOOPBACK), environ={"ACME_SMTP_PASSWORD": "nope"})
    with pytest.raises(ExecutionError, match=r"login as 'support' was refused \(535.*\$ACME_SMTP_PASSWORD") as caught:
        email_send.run(mail(), replace(ctx, effects=wrong))
    assert not isinstance(caught.value, TransientError)
    assert smtp.messages == [] and set(smtp.failed_logins) == {"support"}


def test_email_missing_password_variable(smtp: SmtpServer, ctx: ActionContext, tmp_path: Path,
                                         records: MemoryRecords) -> None:
    """A password variable that is not set is a step error naming the variable."""
    bare = LiveEffects(data_dir=tmp_path, records=records, http=OutboundClient(LOOPBACK), environ={})
    with pytest.raises(ExecutionError, match="ACME_SMTP_PASSWORD .* is not set"):
        email_send.run(mail(), replace(ctx, effects=bare))
    assert smtp.messages == []


@pytest.mark.parametrize(("reply", "transient"), [("451 4.3.0 try again later", True),
                                                  ("550 5.7.1 message rejected", False)])
def test_email_rejection_by_class(smtp: SmtpServer, ctx: ActionContext, reply: str, transient: bool) -> None:
    """An SMTP 4xx answer is transient (retried), a 5xx answer fails the step."""
    smtp.reply = reply
    with pytest.raises(ExecutionError, match=reply.split()[0]) as caught:
        email_send.run(mail(), ctx)
    assert isinstance(caught.value, TransientError) is transient


def test_email_connection_refused_is_transient(directory: MemoryDirectory, ctx: ActionContext) -> None:
    """An SMTP server that is not listening gives a TransientError naming mailbox and host."""
    port = free_port()
    directory.add(smtp_mailbox(port))
    with pytest.raises(TransientError, match=f"mailbox:mb_support via {HOST}:{port}: connection refused"):
        email_send.run(mail(), ctx)


def test_email_without_login(directory: MemoryDirectory, ctx: ActionContext) -> None:
    """A relay that needs no login gets the mail without AUTH and without a password variable."""
    with smtp_server() as server:
        directory.add(smtp_mailbox(server.port, username="", password_env=""))
        email_send.run(mail(to="dave@example.test"), ctx)
    assert [m.rcpt_tos for m in server.messages] == [["dave@example.test"]]
    assert server.messages[0].login is None


def test_outbox_mailbox_writes_parseable_eml(ctx: ActionContext, tmp_path: Path) -> None:
    """An outbox mailbox writes the message as an .eml file under data_dir/outbox/<account>/<mailbox>."""
    result = output(email_send.run(
        mail(mailbox="mailbox:mb_sales", to=["Lead Person <lead@example.test>"], html=True,
             subject="Welcome to Acme\n", body="<p>Hi there</p>"), ctx))

    path = Path(result["path"])
    assert path.parent == tmp_path / "outbox" / ACCOUNT / "mb_sales"
    assert path.name.startswith("20260105T090000Z-") and path.suffix == ".eml"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial file left behind
    message = cast(EmailMessage, message_from_bytes(path.read_bytes(), policy=policy.default))
    assert message["From"] == "Acme Sales <sales@acme.test>"
    assert message["To"] == "Lead Person <lead@example.test>"
    assert message["Subject"] == "Welcome to Acme"  # (a YAML block scalar's last newline is dropped)
    assert message.get_content_type() == "text/html"
    assert message.get_content().strip() == "<p>Hi there</p>"
    assert result["to"] == ["lead@example.test"] and result["message_id"] == message["Message-ID"]


def test_user_recipients_resolved(ctx: ActionContext) -> None:
    """``user:<id>`` recipients become the users' addresses, mixed freely with plain addresses."""
    found = email_send.recipients(["user:u_alice", "x@example.test", "Y <y@example.test>", ["user:u_bob"]], "to", ctx)
    assert [str(a) for a in found] == ["Alice <alice@acme.test>", "x@example.test", "Y <y@example.test>",
                                       "Bob <bob@acme.test>"]


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("user:u_ghost", "to: user:u_ghost has no e-mail address"),
        ("user:u_nobody", "user:u_nobody is not in the directory of account 'acme'"),
        ("", r"to: the recipient is empty \(''\)"),
        (None, r"to: the recipient is empty \(None\)"),
        ("not an address", "to: 'not an address' is not an e-mail address"),
        (["ok@example.test", "broken@"], "to: 'broken@' is not an e-mail address"),
        ([], "to: no recipients"),
    ],
)
def test_bad_recipients_are_clear_errors(ctx: ActionContext, tmp_path: Path, to: Any, message: str) -> None:
    """An empty, malformed or unknown recipient fails the step with a message naming it; nothing is sent."""
    with pytest.raises(ExecutionError, match=message):
        email_send.run(mail(mailbox="mailbox:mb_sales", to=to), ctx)
    assert not (tmp_path / "outbox").exists()


def test_inactive_mailbox_is_refused(ctx: ActionContext, tmp_path: Path) -> None:
    """A deactivated mailbox fails the step with its status, and nothing is written."""
    with pytest.raises(ExecutionError, match="mailbox:mb_old is deactivated; reactivate it"):
        email_send.run(mail(mailbox="mailbox:mb_old"), ctx)
    with pytest.raises(ExecutionError, match="mailbox:mb_nowhere is not in the directory"):
        email_send.run(mail(mailbox="mailbox:mb_nowhere"), ctx)
    assert not (tmp_path / "outbox").exists()


# -- channel.post -----------------------------------------------------------------------------------


def channel(web: HttpServer, directory: MemoryDirectory, path: str = "/services/T000/B000/SECRET") -> None:
    directory.add(DirectoryEntry("channel", "C024BE91L", name="oncall", data={"webhook_url": web.url + path}))


def post(text: str = ":rotating_light: Printer on fire is still open") -> dict[str, Any]:
    return {"id": "page", "type": "channel.post", "channel": "channel:C024BE91L", "text": text}


def test_channel_post_sends_slack_payload(web: HttpServer, directory: MemoryDirectory, ctx: ActionContext) -> None:
    """channel.post POSTs ``{"text": ...}`` as JSON to the channel's webhook and outputs the status."""
    channel(web, directory)
    assert output(channel_post.run(post(), ctx)) == {"status": 200}
    [request] = web.requests
    assert (request.method, request.path) == ("POST", "/services/T000/B000/SECRET")
    assert request.headers["Content-Type"] == "application/json"
    assert request.json == {"text": ":rotating_light: Printer on fire is still open"}


@pytest.mark.parametrize(("status", "transient"), [(500, True), (429, True), (404, False), (400, False)])
def test_channel_post_failures(web: HttpServer, directory: MemoryDirectory, ctx: ActionContext, status: int,
                               transient: bool) -> None:
    """A non-2xx answer fails the step (429/5xx transiently) without showing the secret webhook path."""
    channel(web, directory)
    web.respond("/services/T000/B000/SECRET", status, text="no_service")
    with pytest.raises(ExecutionError, match=f"channel:C024BE91L .* answered {status}.*no_service") as caught:
        channel_post.run(post(), ctx)
    assert isinstance(caught.value, TransientError) is transient
    assert "SECRET" not in str(caught.value)


def test_channel_post_refuses_empty_text(web: HttpServer, directory: MemoryDirectory, ctx: ActionContext) -> None:
    """An empty text is refused before anything is posted."""
    channel(web, directory)
    with pytest.raises(ExecutionError, match="text is empty"):
        channel_post.run(post("  "), ctx)
    assert web.requests == []


# -- http.request -----------------------------------------------------------------------------------


def call(web: HttpServer, path: str, **inputs: Any) -> dict[str, Any]:
    return {"id": "fetch", "type": "http.request", "url": web.url + path, **inputs}


def test_http_get_with_headers_gives_json(web: HttpServer, ctx: ActionContext) -> None:
    """A GET sends the headers and outputs status, headers and the parsed JSON body."""
    web.respond("/api/deals", json_body={"deals": [{"name": "Big"}]}, headers={"X-Total": "1"})
    result = output(http_request.run(call(web, "/api/deals?overdue=true", method="GET", timeout="10s",
                                          headers={"Accept": "application/json", "X-Count": 3},
                                          expect_status=[200]), ctx))
    assert result["status"] == 200
    assert result["json"] == {"deals": [{"name": "Big"}]} and "text" not in result
    assert result["headers"]["X-Total"] == "1"
    [request] = web.requests
    assert (request.method, request.path) == ("GET", "/api/deals?overdue=true")
    assert request.headers["Accept"] == "application/json" and request.headers["X-Count"] == "3"
    assert request.body == b""


def test_http_post_json_and_text_bodies(web: HttpServer, ctx: ActionContext) -> None:
    """``json`` is sent as a JSON document, ``body`` as text; a text answer is output as text."""
    web.respond("/v1/score", 201, json_body={"score": 0.2})
    web.respond("/plain", text="accepted, thanks")
    scored = output(http_request.run(call(web, "/v1/score", method="POST", json={"email": "a@b.test"}), ctx))
    plain = output(http_request.run(call(web, "/plain", method="PUT", body="line one"), ctx))

    assert scored["status"] == 201 and scored["json"] == {"score": 0.2}
    assert plain == {"status": 200, "headers": plain["headers"], "text": "accepted, thanks"}
    posted, put = web.requests
    assert posted.json == {"email": "a@b.test"} and posted.headers["Content-Type"] == "application/json"
    assert (put.method, put.body) == ("PUT", b"line one")


def test_http_long_text_is_capped(web: HttpServer, ctx: ActionContext) -> None:
    """A text body longer than 64 KiB is cut there and marked truncated."""
    web.respond("/big", text="x" * 100_000)
    result = output(http_request.run(call(web, "/big"), ctx))
    assert len(result["text"]) == 64 * 1024 and result["truncated"] is True


def test_http_expect_status_mismatch(web: HttpServer, ctx: ActionContext) -> None:
    """A status outside expect_status fails the step, naming the URL (without its query) and the status."""
    web.respond("/v1/score", 201)
    with pytest.raises(ExecutionError, match=r"POST http://127\.0\.0\.1:\d+/v1/score\?… answered 201, "
                                             r"expected 200") as caught:
        http_request.run(call(web, "/v1/score?key=SECRET", method="POST", expect_status=[200]), ctx)
    assert not isinstance(caught.value, TransientError)
    assert "SECRET" not in str(caught.value)


def test_http_non_2xx_fails_by_default(web: HttpServer, ctx: ActionContext) -> None:
    """Without expect_status any 2xx succeeds and a 404 fails the step."""
    web.respond("/missing", 404, json_body={"error": "no such deal"})
    with pytest.raises(ExecutionError, match=r"answered 404, expected 2xx; body: \{\"error\": \"no such deal\"\}"):
        http_request.run(call(web, "/missing"), ctx)


def test_http_503_is_transient(web: HttpServer, ctx: ActionContext) -> None:
    """A 503 is a TransientError even when expect_status lists other codes."""
    web.respond("/flaky", 503, text="maintenance")
    with pytest.raises(TransientError, match="answered 503"):
        http_request.run(call(web, "/flaky", expect_status=[200]), ctx)


def test_http_connection_refused_is_transient(ctx: ActionContext) -> None:
    """Nothing listening on the port is a TransientError that says so."""
    url = f"http://{HOST}:{free_port()}/hooks"
    with pytest.raises(TransientError, match=f"GET {url}: connection refused"):
        http_request.run({"url": url}, ctx)


def test_http_timeout_is_transient(effects: LiveEffects) -> None:
    """A server that accepts the connection but never answers times out into a TransientError."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind((HOST, 0))
        silent.listen(1)  # the kernel completes the handshake; nobody ever reads or answers
        url = f"http://{HOST}:{silent.getsockname()[1]}/slow"
        with pytest.raises(TransientError, match="timed out"):
            effects.http_request(HttpCall("GET", url, timeout=0.2))


@pytest.mark.parametrize(("inputs", "message"), [
    ({"url": "file:///etc/passwd"}, "'file:///etc/passwd' is not an http:// or https:// URL"),
    ({"url": None}, "'' is not an http"),
    ({"url": "https://x.test", "method": "TRACE"}, "method 'TRACE' is not one of"),
    ({"url": "https://x.test", "headers": {"X": "a\r\nInjected: 1"}}, "header 'X' contains a line break"),
    ({"url": "https://x.test", "timeout": "soon"}, "timeout: 'soon' is not a duration"),
])
def test_http_bad_inputs(ctx: ActionContext, inputs: dict[str, Any], message: str) -> None:
    """A URL that is not http(s), an unknown method, a header with a line break or a bad timeout fail early."""
    with pytest.raises(ExecutionError, match=message):
        http_request.run(inputs, ctx)


# -- record.create / record.update ------------------------------------------------------------------


def test_record_create_and_update(ctx: ActionContext, records: MemoryRecords) -> None:
    """record.create writes through the record writer; record.update merges into the same record."""
    created = output(record_create.run({"id": "task", "type": "record.create", "entity": "task",
                                        "set": {"title": "Call Bob", "due_in_days": 1}}, ctx))
    assert created == {"title": "Call Bob", "due_in_days": 1, "id": "r1", "type": "task"}
    updated = output(record_update.run({"entity": "task", "record_id": "r1", "set": {"done": True}}, ctx))
    assert updated["done"] is True and updated["title"] == "Call Bob"
    assert records.records[(ACCOUNT, "task", "r1")]["done"] is True


def test_record_object_type_uses_its_id(ctx: ActionContext, records: MemoryRecords) -> None:
    """``object_type:<id>`` is looked up in the directory and its id is the record's type."""
    created = output(record_create.run({"entity": "object_type:ot_billing_case", "set": {"title": "Refund"}},
                                       ctx))
    assert created["type"] == "ot_billing_case"
    with pytest.raises(ExecutionError, match="object_type:ot_gone is deleted"):
        record_create.run({"entity": "object_type:ot_gone", "set": {}}, ctx)


def test_record_update_errors(ctx: ActionContext) -> None:
    """A missing record, an empty id, an unknown entity or a non-map ``set`` fail the step clearly."""
    with pytest.raises(ExecutionError, match="updating ticket 404: ticket 404 does not exist"):
        record_update.run({"entity": "ticket", "record_id": 404, "set": {"x": 1}}, ctx)
    with pytest.raises(ExecutionError, match="record_id is empty"):
        record_update.run({"entity": "ticket", "record_id": "", "set": {"x": 1}}, ctx)
    with pytest.raises(ExecutionError, match="entity 'spaceship' is not one of"):
        record_create.run({"entity": "spaceship", "set": {}}, ctx)
    with pytest.raises(ExecutionError, match="set must be a map"):
        record_create.run({"entity": "task", "set": ["x"]}, ctx)
