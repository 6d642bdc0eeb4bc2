"""The account directory: the file format, loading into the store, statuses and reference checks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from controller.errors import DefinitionError, NotFoundError, Problem, UsageError
from controller.model import Workflow, iter_refs
from controller.model.directory import parse_directory
from controller.model.entries import KINDS, DirectoryEntry, check_refs
from controller.store import Store, open_store
from controller.store import directory as d

ROOT = Path(__file__).resolve().parent.parent
DIRECTORIES = sorted((ROOT / "deploy" / "directory").glob("*.yaml"))
NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

SMALL = """\
users:
  - {id: u_alice, name: Alice, email: alice@acme.test}
mailboxes:
  - id: mb_support
    address: support@acme.test
    kind: smtp
    smtp: {host: smtp.acme.test, username: support, password_env: ACME_SMTP_PASSWORD}
channels:
  - {id: C024BE91L, name: oncall, webhook_url: "https://hooks.example/oncall", status: deactivated}
"""


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    store = open_store(store_url)
    yield store
    store.close()


def _entries(text: str = SMALL) -> list[DirectoryEntry]:
    return parse_directory(text, "dir.yaml")


def _problems(text: str, path: str = "dir.yaml") -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        parse_directory(text, path)
    return caught.value.problems


def _load(store: Store, account: str, text: str = SMALL) -> dict[str, int]:
    with store.write() as conn:
        return d.replace_account(conn, account, _entries(text), NOW)


# -- the file ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DIRECTORIES, ids=lambda p: p.name)
def test_example_directories_parse(path: Path) -> None:
    """Every example directory file in deploy/directory parses, with outbox mailboxes only."""
    entries = parse_directory(path.read_text(encoding="utf-8"), str(path))
    assert {e.kind for e in entries} >= {"user", "mailbox", "channel"}
    assert all(e.data["kind"] == "outbox" for e in entries if e.kind == "mailbox")


def test_entry_data_carries_everything_but_id_name_and_status() -> None:
    """DirectoryEntry.data holds the kind-specific fields with defaults filled in; status defaults to active."""
    user, mailbox, channel = _entries()
    assert (user.ref, user.name, user.status) == ("user:u_alice", "Alice", "active")
    assert user.data == {"email": "alice@acme.test", "permissions": []}
    assert mailbox.data == {"address": "support@acme.test", "kind": "smtp", "smtp": {
        "host": "smtp.acme.test", "port": 587, "starttls": True, "ssl": False, "username": "support",
        "password_env": "ACME_SMTP_PASSWORD"}}
    assert (channel.status, channel.data) == ("deactivated", {"webhook_url": "https://hooks.example/oncall"})


def test_json_files_are_read_as_json() -> None:
    """A .json directory file parses, and its errors are located too."""
    text = '{"object_types": [{"id": "ot_17", "name": "Ticket"}]}'
    assert parse_directory(text, "dir.json") == [DirectoryEntry("object_type", "ot_17", "Ticket")]
    missing, unknown = _problems('{\n  "users": [{"id": "u1", "emial": "a@b.test"}]\n}', "dir.json")
    assert (missing.line, missing.column, missing.field) == (2, 13, "users[0]")
    assert (unknown.line, unknown.column, unknown.field) == (2, 26, "users[0].emial")


def test_unknown_key_is_located_and_suggests_the_right_one() -> None:
    """A misspelt key points at the key itself and names the allowed keys; the missing one points at its mapping."""
    missing, problem = _problems("users:\n  - id: u_alice\n    emial: alice@acme.test\n")
    assert str(missing) == "dir.yaml:2:5: users[0]: missing required key 'email'"
    assert str(problem).startswith("dir.yaml:3:5: users[0].emial: unknown key 'emial' (allowed: ")
    assert problem.message.endswith("did you mean 'email'?")


def test_duplicate_id_is_located_at_the_second_id() -> None:
    """Two entries of one kind with the same id point at the second id and name the first."""
    text = "object_types:\n  - {id: ot_1, name: A}\n  - {id: ot_1, name: B}\nchannels: []\n"
    [problem] = _problems(text)
    assert (problem.line, problem.column, problem.field) == (3, 6, "object_types[1].id")
    assert "duplicate id 'ot_1' (already used by object_types[0])" in problem.message


def test_same_id_in_two_kinds_is_fine() -> None:
    """Ids are unique per kind only: a user and a mailbox may share one."""
    text = "users: [{id: x, email: x@a.test}]\nmailboxes: [{id: x, address: x@a.test, kind: outbox}]\n"
    assert [e.ref for e in _entries(text)] == ["user:x", "mailbox:x"]


def test_smtp_block_is_required_for_kind_smtp_and_refused_for_outbox() -> None:
    """kind smtp without smtp points at the mailbox; an outbox with smtp points at the smtp key."""
    text = ("mailboxes:\n  - id: mb_a\n    address: a@acme.test\n    kind: smtp\n"
            "  - id: mb_b\n    address: b@acme.test\n    kind: outbox\n    smtp: {host: h}\n")
    first, second = _problems(text)
    assert (first.line, first.column, first.field) == (2, 5, "mailboxes[0]")
    assert "kind smtp needs an smtp block" in first.message and "kind: outbox" in first.message
    assert (second.line, second.column, second.field) == (8, 5, "mailboxes[1].smtp")


def test_bad_status_and_bad_values_are_located() -> None:
    """A status outside the four, a bad e-mail and a bad id each get their own located message."""
    text = ("users:\n  - {id: u_a, email: a@acme.test, status: paused}\n"
            "  - {id: 'u b', email: 'b at acme.test'}\n")
    status, bad_id, email = _problems(text)
    assert str(status) == ("dir.yaml:2:35: users[0].status: 'paused' is not one of: "
                           "'active', 'deactivated', 'deleted' or 'disconnected'")
    assert (bad_id.line, bad_id.column, bad_id.field) == (3, 6, "users[1].id")
    assert email.field == "users[1].email"
    assert email.message == "'b at acme.test' is not an e-mail address (use name@domain, no spaces)"


def test_ssl_and_starttls_exclude_each_other() -> None:
    """ssl: true alone turns starttls off; both set true is an error at ssl."""
    base = "mailboxes:\n  - id: m\n    address: m@a.test\n    smtp: {host: h, port: 465, ssl: true"
    [mailbox] = _entries(base + "}\n")
    assert mailbox.data["smtp"]["starttls"] is False
    [problem] = _problems(base + ", starttls: true}\n")
    assert problem.field == "mailboxes[0].smtp.ssl" and "not both" in problem.message


@pytest.mark.parametrize("text", ["", "{}\n", "users: []\n"])
def test_a_file_without_entries_is_refused(text: str) -> None:
    """An empty file would wipe the account's directory, so it is refused."""
    [problem] = _problems(text)
    assert "has no entries" in problem.message


def test_yaml_syntax_error_is_located() -> None:
    """A YAML syntax error carries the parser's line and column."""
    [problem] = _problems("users:\n  - {id: u_a, email: a@b.test\n")
    assert problem.line == 3 and problem.message.startswith("YAML syntax error")


# -- the store ---------------------------------------------------------------------------------


def test_replace_account_replaces_and_touches_only_that_account(store: Store) -> None:
    """Loading replaces the account's whole directory (old entries gone) and leaves other accounts alone."""
    assert _load(store, "acme") == {"user": 1, "mailbox": 1, "channel": 1, "object_type": 0}
    _load(store, "globex")
    counts = _load(store, "acme", "users: [{id: u_bob, email: bob@acme.test}]\n")
    assert counts == {"user": 1, "mailbox": 0, "channel": 0, "object_type": 0}
    with store.read() as conn:
        assert [e.ref for e in d.list_entries(conn, "acme")] == ["user:u_bob"]
        assert d.get(conn, "acme", "mailbox:mb_support") is None
        assert [e.ref for e in d.list_entries(conn, "globex")] == [
            "user:u_alice", "mailbox:mb_support", "channel:C024BE91L"]
        assert [e.ref for e in d.list_entries(conn, "globex", "channel")] == ["channel:C024BE91L"]


def test_replace_account_refuses_duplicates_and_bad_statuses(store: Store) -> None:
    """Entries built by a caller (not parsed) are checked before anything is written."""
    twice = [DirectoryEntry("user", "u1"), DirectoryEntry("user", "u1")]
    with pytest.raises(UsageError, match="user:u1 appears twice"), store.write() as conn:
        d.replace_account(conn, "acme", twice, NOW)
    with pytest.raises(UsageError, match="unknown status 'gone'"), store.write() as conn:
        d.replace_account(conn, "acme", [DirectoryEntry("user", "u1", status="gone")], NOW)


def test_has_directory_and_snapshot(store: Store) -> None:
    """An account is "loaded" once it has entries; snapshot returns only loaded accounts, by ref."""
    _load(store, "acme")
    with store.read() as conn:
        assert d.has_directory(conn, "acme") and not d.has_directory(conn, "globex")
        snap = d.snapshot(conn, ["acme", "globex"])
        assert d.snapshot(conn, []) == {}
    assert list(snap) == ["acme"]
    assert sorted(snap["acme"]) == ["channel:C024BE91L", "mailbox:mb_support", "user:u_alice"]
    assert snap["acme"]["user:u_alice"].data["email"] == "alice@acme.test"


def test_set_status_changes_one_entry(store: Store) -> None:
    """set_status returns the changed entry and the change is visible to later reads."""
    _load(store, "acme")
    with store.write() as conn:
        entry = d.set_status(conn, "acme", "mailbox:mb_support", "disconnected", NOW + timedelta(hours=1))
    assert (entry.ref, entry.status, entry.data["address"]) == ("mailbox:mb_support", "disconnected",
                                                                "support@acme.test")
    assert d.StoreDirectory(store).get("acme", "mailbox:mb_support") == entry


def test_set_status_errors_say_what_to_do(store: Store) -> None:
    """A missing ref names ref and account; an unknown status lists the allowed ones; a bad ref shows the form."""
    _load(store, "acme")
    with pytest.raises(NotFoundError, match=r"mailbox:mb_gone is not in the directory of account 'acme'"), \
            store.write() as conn:
        d.set_status(conn, "acme", "mailbox:mb_gone", "active", NOW)
    with pytest.raises(NotFoundError, match="account 'globex'"), store.write() as conn:
        d.set_status(conn, "globex", "mailbox:mb_support", "active", NOW)
    with pytest.raises(UsageError, match="use one of: active, deactivated, deleted, disconnected"), \
            store.write() as conn:
        d.set_status(conn, "acme", "mailbox:mb_support", "paused", NOW)
    with pytest.raises(UsageError, match=r"use <kind>:<id>"), store.write() as conn:
        d.set_status(conn, "acme", "inbox:mb_support", "active", NOW)


def test_store_directory_get(store: Store) -> None:
    """StoreDirectory answers the Directory protocol: the entry, or None for unknown or malformed refs."""
    _load(store, "acme")
    directory = d.StoreDirectory(store)
    channel = directory.get("acme", "channel:C024BE91L")
    assert channel is not None and channel.status == "deactivated" and not channel.active
    assert directory.get("acme", "channel:C_NONE") is None
    assert directory.get("globex", "channel:C024BE91L") is None
    assert directory.get("acme", "C024BE91L") is None


# -- reference checks --------------------------------------------------------------------------


def test_check_refs_reports_missing_and_inactive_references() -> None:
    """Missing and non-active references get a message each; active ones and templates pass."""
    entries = {e.ref: e for e in _entries()}
    refs = [("spec.actions[0].mailbox", "mailbox", "mb_support"),
            ("spec.actions[0].to", "user", "u_alice"),
            ("spec.actions[1].mailbox", "mailbox", "mb_gone"),
            ("spec.actions[2].channel", "channel", "C024BE91L"),
            ("spec.actions[3].to", "user", "{{ vars.owner }}")]
    problems = check_refs(refs, entries, "acme")
    assert [path for path, _ in problems] == ["spec.actions[1].mailbox", "spec.actions[2].channel"]
    assert problems[0][1].startswith("mailbox:mb_gone is not in the directory of account 'acme'")
    assert problems[1][1].startswith("channel:C024BE91L is deactivated (status: deactivated)")


def _workflow_refs(account: str) -> list[tuple[str, str, str, str]]:
    found = []
    for path in sorted((ROOT / "workflows.d" / account).glob("*.yaml")):
        if path.name.endswith(".tests.yaml"):
            continue
        workflow = Workflow.model_validate(YAML(typ="safe", pure=False).load(path.read_text(encoding="utf-8")))
        found += [(path.name, *ref) for ref in iter_refs(workflow)]
    return found


@pytest.mark.parametrize("account", ["acme", "globex"])
def test_every_example_reference_resolves(account: str) -> None:
    """Every reference in workflows.d/<account>/ names an active entry of deploy/directory/<account>.yaml."""
    path = ROOT / "deploy" / "directory" / f"{account}.yaml"
    entries = {e.ref: e for e in parse_directory(path.read_text(encoding="utf-8"), str(path))}
    refs = _workflow_refs(account)
    assert refs, f"no references in workflows.d/{account}"
    for name, field, kind, ref_id in refs:
        assert check_refs([(field, kind, ref_id)], entries, account) == [], f"{name}: {field}"
    assert {kind for _, _, kind, _ in refs} <= set(KINDS)
