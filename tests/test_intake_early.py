"""Intake checks what needs no store before the write lock, under the secret it last read: a rotation since
then (in this process or another) must still refuse the old secret and take the new one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from httpkit import Http, http_kit

from controller.security import secrets

KEY = "acme/contact-form"


@pytest.fixture
def http(tmp_path: Path, store_url: str) -> Iterator[Http]:
    with http_kit(tmp_path, store_url) as h:
        yield h


def test_after_a_rotation_in_the_store_the_secret_read_before_is_refused(http: Http) -> None:
    old = http.secret(KEY)
    assert http.hook(KEY, {"n": 1}, secret=old).status_code == 202  # the old secret is now the one intake knows
    with http.kit.store.tx() as conn:  # as `wfctl webhook rotate` in another process would
        new = secrets.rotate(conn, http.box, KEY, actor="test", now=http.kit.clock.now()).secret
    assert http.hook(KEY, {"n": 2}, secret=old).status_code == 401
    assert http.hook(KEY, {"n": 3}, secret=new).status_code == 202
    assert http.hook(KEY, {"n": 4}, secret=old).status_code == 401
    assert http.executions() == 2


def test_the_answers_keep_their_order_when_several_checks_fail(http: Http) -> None:
    """Stale and unsigned beats bad JSON (401 before 400); an unknown workflow beats both (404)."""
    now = int(http.kit.clock.now().timestamp())
    stale = http.signed(KEY, b"{nope", at=now - 1000)
    assert http.client.post(f"/hooks/{KEY}", data=b"{nope", headers=stale).status_code == 401
    wrong = {**http.signed(KEY, b"{nope"), "X-Wfc-Signature": "sha256=" + "0" * 64}
    assert http.client.post(f"/hooks/{KEY}", data=b"{nope", headers=wrong).status_code == 401
    assert http.client.post("/hooks/acme/nothing", data=b"{nope", headers=stale).status_code == 404
    assert http.client.post(f"/hooks/{KEY}", data=b"{nope", headers=http.signed(KEY, b"{nope")).status_code == 400
    assert http.executions() == 0


@pytest.mark.parametrize("stamp", ["\xfe1", "12a", ""])
def test_a_bad_timestamp_is_401_also_when_the_secret_is_known(http: Http, stamp: str) -> None:
    """Found by the property test: the early signature check under a known secret signed over a non-ASCII
    timestamp and answered 500. A timestamp that fails is the answer; the signature is not computed over it."""
    assert http.hook(KEY, {"n": 1}).status_code == 202  # intake now knows the secret
    headers = {**http.signed(KEY, b"{}"), "X-Wfc-Timestamp": stamp}
    answer = http.client.post(f"/hooks/{KEY}", data=b"{}", headers=headers)
    assert answer.status_code == 401, answer.get_data(as_text=True)
    assert http.executions() == 1
