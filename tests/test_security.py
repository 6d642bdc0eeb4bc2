"""Credentials at rest: the Fernet key file, encrypted secrets, hashed tokens, strict JSON, signatures."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from controller.errors import AuthError, PayloadError, PermissionDenied, StoreError, UsageError
from controller.security import tokens
from controller.security.payloads import parse_json
from controller.security.secrets import KEY_FILE, SecretBox, read_or_create_key
from controller.security.signing import check_signature, check_timestamp, sign
from controller.store import open_store

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_the_key_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    """Without WFC_SECRET_KEY a key is generated into the data directory, private, and reused."""
    box = SecretBox.load(tmp_path / "data")
    path = tmp_path / "data" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = box.encrypt("whsec_x")
    assert SecretBox.load(tmp_path / "data").decrypt(sealed) == "whsec_x"
    assert [p.name for p in path.parent.iterdir()] == [KEY_FILE]  # no partial files left behind


def test_a_readable_key_file_is_made_private(tmp_path: Path) -> None:
    """A key file others can read is tightened to 0600 when loaded."""
    path = tmp_path / KEY_FILE
    path.write_bytes(Fernet.generate_key())
    os.chmod(path, 0o644)
    read_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_environment_key_wins_and_a_bad_one_says_how_to_make_one(tmp_path: Path) -> None:
    """WFC_SECRET_KEY is used instead of the file; a malformed one is a UsageError naming the fix."""
    key = Fernet.generate_key().decode()
    sealed = SecretBox.load(tmp_path, key).encrypt("whsec_y")
    assert not (tmp_path / KEY_FILE).exists()
    assert Fernet(key.encode()).decrypt(sealed.encode()) == b"whsec_y"
    with pytest.raises(UsageError, match="Fernet.generate_key"):
        SecretBox.load(tmp_path, "not-a-key")
    with pytest.raises(StoreError, match="cannot be decrypted"):
        SecretBox.load(tmp_path, Fernet.generate_key().decode()).decrypt(sealed)


def test_tokens_are_stored_as_hashes_and_checked_for_permissions(sqlite_url: str) -> None:
    """Only the SHA-256 is stored; admin implies every permission; revoked and unknown tokens are refused."""
    store = open_store(sqlite_url)
    try:
        with store.tx() as conn:
            made = tokens.create(conn, "acme", "u_a", "workflow.read,records.write", NOW, name="ci")
            admin = tokens.create(conn, "acme", "u_b", ["admin"], NOW)
            rows = conn.exec_driver_sql("SELECT * FROM api_tokens").all()
        assert made.bearer.startswith("wfc_") and made.bearer not in str(rows)
        with store.read() as conn:
            found = tokens.verify(conn, made.bearer)
        assert (found.account, found.user, found.permissions) == ("acme", "u_a",
                                                                  frozenset({"workflow.read", "records.write"}))
        found.require("workflow.read")
        with pytest.raises(PermissionDenied, match="workflow.manage") as denied:
            found.require("workflow.manage")
        assert denied.value.permission == "workflow.manage"
        with store.read() as conn:
            tokens.verify(conn, admin.bearer).require("workflow.manage")
        with store.tx() as conn:
            with pytest.raises(UsageError, match="already has a token named 'ci'"):
                tokens.create(conn, "acme", "u_a", "admin", NOW, name="ci")
            tokens.revoke(conn, "acme", "ci", NOW)
            tokens.revoke(conn, "acme", str(admin.token.id), NOW)
            with pytest.raises(AuthError, match="revoked"):
                tokens.verify(conn, made.bearer)
            with pytest.raises(AuthError, match="not valid"):
                tokens.verify(conn, "wfc_guess")
            with pytest.raises(UsageError, match="unknown permission"):
                tokens.create(conn, "acme", "u_a", "workflow.read,root", NOW)
            for bad in ("Acme Corp", "acme\n", "../acme"):
                with pytest.raises(UsageError, match="not an account name"):
                    tokens.create(conn, bad, "u_a", "admin", NOW)
    finally:
        store.close()


def test_strict_json_refuses_what_the_store_cannot_hold() -> None:
    """NaN, overflowing numbers, NUL, lone surrogates, deep nesting and bad UTF-8 are PayloadErrors."""
    assert parse_json(b'\xef\xbb\xbf{"a": [1, 2.5, "\\u00e9", "\\ud83d\\ude00"]}') == {"a": [1, 2.5, "é", "😀"]}
    for bad, message in ((b"NaN", "not a JSON number"), (b"[1e400]", "too large"), (b'"\\u0000"', "NUL"),
                         (b'["\\udc00"]', "surrogate"), (b"[" * 65 + b"]" * 65, "nests deeper"),
                         (b"[" * 100000, "nests too deeply"), (b"\x80", "not UTF-8"), (b"{", "not valid JSON")):
        with pytest.raises(PayloadError, match=message):
            parse_json(bad)
    assert parse_json(b"[" * 64 + b"]" * 64) is not None


def test_signatures_and_timestamps() -> None:
    """The signature is HMAC-SHA256 over "<timestamp>.<body>"; timestamps outside 300 s are refused."""
    assert sign("s", 1, b"{}") == "sha256=" + __import__("hmac").new(b"s", b"1.{}", "sha256").hexdigest()
    check_signature("s", "1", b"{}", sign("s", 1, b"{}"))
    with pytest.raises(AuthError):
        check_signature("s", "2", b"{}", sign("s", 1, b"{}"))
    now = NOW.timestamp()
    check_timestamp(str(int(now) + 300), NOW)
    for bad in (str(int(now) - 301), str(int(now) + 301), "", "-5", "1e9", "9" * 40):
        with pytest.raises(AuthError):
            check_timestamp(bad, NOW)
