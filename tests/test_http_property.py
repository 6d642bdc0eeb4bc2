"""Property: no body, header, path or method makes the service answer 500, and every error is JSON."""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpkit import Http, http_kit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

segment = st.one_of(st.text(string.ascii_letters + string.digits + "-_.:~%", min_size=1, max_size=12),
                    st.integers(min_value=2**31 - 2, max_value=2**70).map(str))  # ids at and beyond the store's
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
bodies = st.one_of(st.binary(max_size=600), json_values.map(lambda v: json.dumps(v).encode()),
                   st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
paths = st.one_of(
    st.sampled_from(["/hooks/acme/contact-form", "/hooks/acme/limited", "/hooks/acme/off", "/hooks/git",
                     "/api/v1/workflows", "/api/v1/executions", "/api/v1/accounts/acme/events",
                     "/api/v1/accounts/acme/mail", "/api/v1/accounts/acme/directory", "/readyz"]),
    st.tuples(st.sampled_from(["/hooks", "/api/v1/workflows/acme", "/api/v1/executions",
                               "/api/v1/accounts/acme/records", "/api/v1/accounts/acme/directory/user"]),
              st.lists(segment, min_size=1, max_size=3)).map(lambda p: "/".join([p[0], *p[1]])),
)
headers = st.dictionaries(
    st.sampled_from(["X-Wfc-Timestamp", "X-Wfc-Signature", "Content-Type", "Authorization", "X-Hub-Signature-256",
                     "X-Gitlab-Token", "Content-Encoding", "Accept"]),
    header_text, max_size=5)


@pytest.fixture
def http(tmp_path: Path, store_url: str) -> Iterator[Http]:
    with http_kit(tmp_path, store_url) as h:
        yield h


def _check(answer: Any) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.get_data()[:300])
    if answer.status_code >= 400:
        assert answer.is_json and set(answer.json["error"]) == {"code", "message"}


@SETTINGS
@given(path=paths, method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]), body=bodies, extra=headers,
       authorized=st.booleans(), signed=st.booleans())
def test_arbitrary_requests_never_answer_500(http: Http, path: str, method: str, body: bytes, extra: dict[str, str],
                                             authorized: bool, signed: bool) -> None:
    """Whatever arrives, the answer is below 500 and errors are JSON."""
    sent = dict(extra)
    if authorized:
        sent["Authorization"] = f"Bearer {http.admin()}"
    if signed and path.startswith("/hooks/acme/"):
        sent.update(http.signed(path.removeprefix("/hooks/"), body))
    _check(http.client.open(path, method=method, data=body, headers=sent))


@SETTINGS
@given(body=bodies)
def test_signed_webhook_bodies_are_queued_or_refused_as_400(http: Http, body: bytes) -> None:
    """A correctly signed body is either JSON the store can hold (202) or a 400 that says why."""
    http.kit.clock.advance(seconds=1)  # a fresh timestamp: the same body signed at the same second is a replay
    answer = http.hook("acme/contact-form", body=body)
    assert answer.status_code in (202, 400), (answer.status_code, answer.get_data()[:300])
    _check(answer)
