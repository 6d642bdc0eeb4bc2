"""`wfctl webhook rotate` and `wfctl token create|revoke|list`: output, JSON keys, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet
from gitutil import commit_files, make_repo

from controller.cli import cli
from controller.security import secrets, tokens
from controller.store import open_store, views

HOOK = """apiVersion: workflows/v1
kind: Workflow
metadata: {name: hook}
spec:
  trigger: {type: webhook}
  actions:
    - {id: a, type: set, vars: {x: 1}}
"""
KEY = Fernet.generate_key().decode()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    commit_files(make_repo(path), {"workflows.d/acme/hook.yaml": HOOK}, "add hook")
    assert wfctl(path, "sync").exit_code == 0
    return path


def wfctl(repo: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--repo", str(repo), "--data-dir", str(repo.parent / "data"), *args],
                              env={"WFC_SECRET_KEY": KEY})


def test_webhook_rotate_prints_the_new_secret_once_and_audits(repo: Path) -> None:
    """stdout is the secret alone; --json adds fingerprint and generation; the audit names the actor."""
    first = wfctl(repo, "webhook", "rotate", "acme/hook")
    assert first.exit_code == 0, first.output
    secret = first.stdout.strip()
    assert secret.startswith("whsec_") and "shown only this once" in first.stderr
    second = wfctl(repo, "webhook", "rotate", "acme/hook", "--json")
    data = json.loads(second.stdout)
    assert set(data) == {"workflow", "secret", "fingerprint", "created_at", "generation"}
    assert data["generation"] == 3 and data["secret"] != secret  # sync made the first when it applied the workflow
    store = open_store(f"sqlite:///{repo.parent / 'data' / 'wfctl.db'}")
    try:
        with store.read() as conn:
            assert secrets.current(conn, secrets.SecretBox(KEY), secrets.webhook_workflow(conn, "acme/hook").id) \
                == data["secret"]
            events = [e for e in views.audit(conn, "acme/hook") if e["action"] == "secret_rotated"]
            created = [e for e in views.audit(conn, "acme/hook") if e["action"] == "secret_created"]
    finally:
        store.close()
    assert len(events) == 2 and events[0]["actor"].endswith("(wfctl)")
    assert len(created) == 1
    missing = wfctl(repo, "webhook", "rotate", "acme/nope")
    assert missing.exit_code == 2 and missing.stderr.startswith("wfctl: error: no workflow 'acme/nope'")


def test_token_create_revoke_and_list(repo: Path) -> None:
    """create prints the token once; list never shows it; revoke by name or id stops it."""
    made = wfctl(repo, "token", "create", "--account", "acme", "--user", "u_alice", "--permissions",
                 "workflow.read,records.write", "--name", "ci")
    assert made.exit_code == 0, made.output
    bearer = made.stdout.strip()
    assert bearer.startswith("wfc_") and "shown only this once" in made.stderr
    as_json = json.loads(wfctl(repo, "token", "create", "--account", "acme", "--user", "u_bob", "--permissions",
                               "admin", "--json").stdout)
    assert set(as_json) == {"id", "account", "user", "name", "permissions", "granted", "token"}
    listed = wfctl(repo, "token", "list", "--account", "acme", "--json")
    assert bearer not in listed.stdout and [t["name"] for t in json.loads(listed.stdout)] == [None, "ci"]
    assert wfctl(repo, "token", "revoke", "ci", "--account", "acme").exit_code == 0
    assert wfctl(repo, "token", "revoke", str(as_json["id"]), "--account", "acme").exit_code == 0
    again = wfctl(repo, "token", "revoke", "ci", "--account", "acme")
    assert again.exit_code == 2 and "no active token 'ci'" in again.stderr
    bad = wfctl(repo, "token", "create", "--account", "acme", "--user", "u", "--permissions", "workflow.write")
    assert bad.exit_code == 2 and "unknown permission" in bad.stderr and "workflow.read" in bad.stderr
    store = open_store(f"sqlite:///{repo.parent / 'data' / 'wfctl.db'}")
    try:
        with store.read() as conn, pytest.raises(Exception, match="revoked"):
            tokens.verify(conn, bearer)
    finally:
        store.close()


def test_token_list_shows_what_the_directory_leaves_of_each_token(repo: Path, tmp_path: Path) -> None:
    """`token list` prints the effective permissions (the user's directory entry applied) and what was granted."""
    directory = tmp_path / "acme.yaml"
    directory.write_text("users:\n  - {id: u_alice, email: alice@acme.test, permissions: [workflow.read]}\n"
                         "  - {id: u_bob, email: bob@acme.test, status: deactivated}\n")
    assert wfctl(repo, "directory", "load", str(directory), "--account", "acme").exit_code == 0
    made = wfctl(repo, "token", "create", "--account", "acme", "--user", "u_alice", "--permissions",
                 "workflow.read,workflow.run_manual", "--name", "ci")
    assert made.exit_code == 0 and "workflow.read (granted workflow.read,workflow.run_manual;" in made.stderr
    listed = json.loads(wfctl(repo, "token", "list", "--account", "acme", "--json").stdout)
    assert [(t["permissions"], t["granted"]) for t in listed] == [
        (["workflow.read"], ["workflow.read", "workflow.run_manual"])]
    directory.write_text("users:\n  - {id: u_alice, email: alice@acme.test, status: deactivated}\n")
    assert wfctl(repo, "directory", "load", str(directory), "--account", "acme").exit_code == 0
    text = wfctl(repo, "token", "list", "--account", "acme")
    assert text.exit_code == 0 and "(none) (granted workflow.read,workflow.run_manual;" in text.stdout
