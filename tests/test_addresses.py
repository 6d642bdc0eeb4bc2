"""Addresses are parsed, not pasted: against a real SMTP server on 127.0.0.1, in the engine and the dry run.

A record field cannot add a recipient or a header: a line break anywhere in a header value fails the
step before anything is sent, and a string is one address (several are a list).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from enginekit import Kit, kit
from pydantic import ValidationError
from servers import SmtpServer, smtp_server

from controller.addresses import HOST_ADDRESS, address, header_text
from controller.engine.dryrun import DryRunner, SyntheticDirectory
from controller.errors import ExecutionError
from controller.model import load_workflow
from controller.model.directory import parse_directory
from controller.safeguards.delivery import _alert_mail

ATTACK = "x@a.test\r\nBcc: evil@evil.test"


def directory(port: int, name: str = "Acme Support") -> str:
    return f"""
users:
  - {{id: u_alice, name: Alice, email: alice@acme.test}}
mailboxes:
  - id: mb_smtp
    name: {json.dumps(name)}
    address: support@acme.test
    kind: smtp
    smtp: {{host: 127.0.0.1, port: {port}, starttls: false}}
"""


def workflow(**fields: Any) -> str:
    """A manual workflow (JSON is YAML too) with one email.send step; ``fields`` override its keys."""
    step = {"id": "mail", "type": "email.send", "mailbox": "mailbox:mb_smtp", "to": "{{ record.email }}",
            "subject": "Hello {{ record.name }}", "body": "Hi", **fields}
    return json.dumps({"apiVersion": "workflows/v1", "kind": "Workflow", "metadata": {"name": "mailer"},
                       "spec": {"trigger": {"type": "manual", "entities": ["lead"]}, "actions": [step]}})


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def world(tmp_path: Path, smtp: SmtpServer) -> Iterator[Kit]:
    with kit(tmp_path, f"sqlite:///{tmp_path / 'store.db'}") as k:
        k.directory(directory(smtp.port))
        yield k


def send(k: Kit, record: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Deploy the mailer with ``fields``, run it on ``record``; the execution as shown."""
    k.deploy({"workflows.d/acme/mailer.yaml": workflow(**fields)})
    return k.show(k.run("acme/mailer", {"type": "manual", "record": {"id": "l1", "name": "Dana", **record}}))


def rcpt(smtp: SmtpServer) -> list[str]:
    return [address for message in smtp.messages for address in message.rcpt_tos]


def dry_run(record: dict[str, Any], **fields: Any) -> Any:
    definition = json.loads(workflow(**fields))
    runner = DryRunner(account="acme", directory=SyntheticDirectory(), definitions=lambda name: None,
                       now=lambda: datetime(2026, 12, 1, tzinfo=UTC))
    return runner.run("mailer", definition, trigger={"type": "manual"}, record={"name": "Dana", **record})


def test_a_line_break_in_a_record_field_adds_no_recipient(world: Kit, smtp: SmtpServer) -> None:
    """``x@a.test\\r\\nBcc: evil@evil.test`` fails the step clearly; the server sees no RCPT TO at all."""
    shown = send(world, {"email": ATTACK})
    assert shown["status"] == "failed"
    assert shown["error"].startswith("step mail: to: 'x@a.test\\r\\nBcc: evil@evil.test' contains a line break")
    assert rcpt(smtp) == [] and smtp.messages == []
    assert dry_run({"email": ATTACK}).error == shown["error"]  # the dry run decides the same

    fine = send(world, {"email": "dana@lead.test"})  # the same workflow reaches the server with a clean field
    assert fine["status"] == "succeeded" and rcpt(smtp) == ["dana@lead.test"]


@pytest.mark.parametrize(("fields", "record", "message"), [
    ({}, {"email": "a@x.test, b@y.test"}, "to: 'a@x.test, b@y.test' is not an e-mail address (give exactly one"),
    ({}, {"email": "a@x.test b@y.test"}, "to: 'a@x.test b@y.test' is not an e-mail address"),
    ({}, {"email": "team: a@x.test, b@y.test;"}, "to: 'team: a@x.test, b@y.test;' is not an e-mail address"),
    ({"subject": "Re: {{ record.name }}"}, {"email": "d@lead.test", "name": "Dana\r\nBcc: evil@evil.test"},
     "subject: 'Re: Dana\\r\\nBcc: evil@evil.test' contains a line break"),
    ({"cc": "{{ record.cc }}"}, {"email": "d@lead.test", "cc": "c@lead.test\nBcc: evil@evil.test"},
     "cc: 'c@lead.test\\nBcc: evil@evil.test' contains a line break"),
    ({"bcc": ["{{ record.cc }}"]}, {"email": "d@lead.test", "cc": "c@lead.test\rTo: evil@evil.test"},
     "bcc: 'c@lead.test\\rTo: evil@evil.test' contains a line break"),
    ({"reply_to": "{{ record.cc }}"}, {"email": "d@lead.test", "cc": "c@lead.test,evil@evil.test"},
     "reply_to: 'c@lead.test,evil@evil.test' is not an e-mail address"),
])
def test_bad_header_values_fail_the_step_naming_the_field(world: Kit, smtp: SmtpServer, fields: dict[str, Any],
                                                          record: dict[str, Any], message: str) -> None:
    """A second address in a string, or a line break in any header, fails the step naming the field; nothing sent."""
    shown = send(world, record, **fields)
    assert shown["status"] == "failed" and shown["error"].startswith(f"step mail: {message}"), shown["error"]
    assert rcpt(smtp) == []
    assert dry_run(record, **fields).error == shown["error"]


def test_lists_are_the_way_to_several_recipients(world: Kit, smtp: SmtpServer) -> None:
    """A placeholder giving a list, and a YAML list, are several recipients; bcc goes out without its header."""
    shown = send(world, {"emails": ["a@x.test", "Bea <b@y.test>"], "email": "x"}, to="{{ record.emails }}",
                 cc=["user:u_alice", '"Carl, Jr." <c@z.test>'], bcc="{{ record.emails[0] }}", reply_to="r@x.test")
    assert shown["status"] == "succeeded", shown
    [received] = smtp.messages
    assert sorted(received.rcpt_tos) == ["a@x.test", "a@x.test", "alice@acme.test", "b@y.test", "c@z.test"]
    assert received.message["To"] == "a@x.test, Bea <b@y.test>"
    assert received.message["Cc"] == 'Alice <alice@acme.test>, "Carl, Jr." <c@z.test>'
    assert received.message["Reply-To"] == "r@x.test" and received.message["Bcc"] is None


def test_a_mailbox_name_with_a_line_break_is_refused(tmp_path: Path, smtp: SmtpServer) -> None:
    """The From header is built from the directory's name and address, checked like any other header."""
    with kit(tmp_path, f"sqlite:///{tmp_path / 'store.db'}") as k:
        k.directory(directory(smtp.port, name="Support\r\nBcc: evil@evil.test"))
        shown = send(k, {"email": "d@lead.test"})
    assert shown["status"] == "failed" and "mailbox:mb_smtp has no valid sending address" in shown["error"]
    assert "contains a line break" in shown["error"] and rcpt(smtp) == []


def test_alert_mails_are_built_from_parsed_addresses() -> None:
    """Alert e-mails parse their sender and recipients the same way; their own subject is folded, not refused."""
    mail = _alert_mail("wfctl@localhost", ["ops@acme.test", "Ops <o@acme.test>"], "acme/x failed\r\nBcc: e@e.test")
    assert mail["From"] == "wfctl@localhost" and mail["To"] == "ops@acme.test, Ops <o@acme.test>"
    assert mail["Subject"] == "acme/x failed Bcc: e@e.test" and mail["Bcc"] is None
    with pytest.raises(ExecutionError, match="the alert sink's to: 'a@x.test, b@x.test' is not an e-mail address"):
        _alert_mail("wfctl@localhost", ["a@x.test, b@x.test"], "s")


@pytest.mark.parametrize("text", ["a@x.test", "Alice <a@x.test>", '"Doe, J" <j@x.test>', "  b@x.test\n"])
def test_one_address_parses(text: str) -> None:
    """A plain address, a named one (a comma inside quotes too) and one with surrounding whitespace are one."""
    assert str(address(text, "to")) == text.strip()


def test_header_text_and_host_addresses() -> None:
    """Header text keeps its inner spaces; a host-only address is allowed only where asked for."""
    assert header_text("  Hello  there \n", "subject") == "Hello  there"
    assert address("wfctl@localhost", "from", HOST_ADDRESS).addr_spec == "wfctl@localhost"
    with pytest.raises(ExecutionError, match="'wfctl@localhost' is not an e-mail address"):
        address("wfctl@localhost", "to")
    assert parse_directory(directory(25), "d.yaml")  # (the fixture's directory is valid)


@pytest.mark.parametrize(("to", "valid"), [
    ("a@x.test", True), ("Alice <a@x.test>", True), (["a@x.test", "b@y.test"], True),
    ("a@x.test, b@y.test", False), ("a@x.test\nBcc: e@e.test", False),
])
def test_a_definition_checks_its_recipients_with_the_same_parser(to: Any, valid: bool) -> None:
    """`wfctl validate` judges a written recipient as the step will: a comma string is one bad address."""
    data = json.loads(workflow(to=to))
    try:
        load_workflow(data)
    except ValidationError as error:
        assert not valid and "is not a recipient" in str(error)
    else:
        assert valid
