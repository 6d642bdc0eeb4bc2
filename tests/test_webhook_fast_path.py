"""The webhook fast path (webhooks.hooks.FastHooks) answers exactly what the Flask route answers.

Each case is sent twice with the same kind of content: once through the app as served (the WSGI
middleware answers it) and once to the Flask app behind the middleware (the route of record); the
status line, the headers and the body must be the same, and so must the counters they leave.
"""

# mypy: disable-error-code=index

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from httpkit import Http, http_kit
from werkzeug.test import Client

from webhooks.hooks import FastHooks

Case = Callable[[Http, str], tuple[str, bytes, dict[str, str]]]


def _signed(key: str, payload: Any = None, *, body: bytes | None = None, **signing: Any) -> Case:
    def make(http: Http, tag: str) -> tuple[str, bytes, dict[str, str]]:
        raw = json.dumps({**payload, "tag": tag}).encode() if body is None else body
        return f"/hooks/{key}", raw, http.signed(key, raw, **signing)
    return make


def _replay(http: Http, tag: str) -> tuple[str, bytes, dict[str, str]]:
    raw = json.dumps({"name": "again", "tag": tag}).encode()
    headers = http.signed("acme/contact-form", raw)
    assert http.client.post("/hooks/acme/contact-form", data=raw, headers=headers).status_code == 202
    return "/hooks/acme/contact-form", raw, headers


CASES: dict[str, Case] = {
    "accepted": _signed("acme/contact-form", {"name": "Ada"}),
    "replayed": _replay,
    "bad signature": lambda http, tag: ("/hooks/acme/contact-form", b"{}", {
        **http.signed("acme/contact-form", b"{}"), "X-Wfc-Signature": "sha256=" + "0" * 64}),
    "no headers": lambda http, tag: ("/hooks/acme/contact-form", b"{}", {}),
    "bad json": _signed("acme/contact-form", body=b"{nope"),
    "unknown": lambda http, tag: ("/hooks/acme/nothing", b"{}", http.signed("acme/contact-form", b"{}")),
    "not a webhook": lambda http, tag: ("/hooks/acme/greet", b"{}", http.signed("acme/contact-form", b"{}")),
    "disabled": _signed("acme/off", {"name": "Off"}),
    "too large": _signed("acme/contact-form", body=b'{"a": "' + b"x" * (1024 * 1024) + b'"}'),
    "not ascii": _signed("acme/contact-form", {"name": "caf\u00e9 \u2603"}),
    "path not ascii": lambda http, tag: ("/hooks/acme/caf\u00e9", b"{}", http.signed("acme/contact-form", b"{}")),
}


@pytest.fixture
def http(tmp_path: Path, store_url: str) -> Iterator[Http]:
    with http_kit(tmp_path, store_url) as h:
        yield h


def _answer(client: Client, path: str, body: bytes, headers: dict[str, str]) -> tuple[str, list[Any], str]:
    response = client.post(path, data=body, headers=headers)
    return response.status, sorted(response.headers.items()), response.get_data(as_text=True)


def _without_ids(answer: tuple[str, list[Any], str]) -> tuple[str, list[Any], str]:
    """Execution ids differ between the two sends; everything else must not."""
    status, headers, body = answer
    headers = [(k, "/api/v1/executions/N" if k == "Location" else v) for k, v in headers]
    body = json.dumps({**json.loads(body), "execution_id": "N"}) if '"execution_id"' in body else body
    return status, headers, body


def _counted(http: Http) -> dict[str, float]:
    """wfctl_webhook_requests_total by code (the counters are the process's: compare differences)."""
    prefix = 'wfctl_webhook_requests_total{code="'
    return {line[len(prefix):len(prefix) + 3]: float(line.split()[-1])
            for line in http.client.get("/metrics").get_data(as_text=True).splitlines() if line.startswith(prefix)}


def test_the_fast_path_answers_what_the_flask_route_answers(http: Http) -> None:
    middleware = http.app.wsgi_app
    assert isinstance(middleware, FastHooks)
    served, routed = Client(http.app), Client(middleware.app)  # the app as served, and Flask without the middleware
    before = _counted(http)
    for name, case in CASES.items():
        fast, flask = (_answer(client, *case(http, f"{name}-{which}"))
                       for which, client in (("fast", served), ("flask", routed)))
        assert _without_ids(fast) == _without_ids(flask), name
    after = _counted(http)
    # Every case counted twice by its status (the replay case's first send is one more 202, twice).
    assert {code: n - before.get(code, 0) for code, n in after.items() if n != before.get(code, 0)} == {
        "202": 6, "400": 2, "401": 6, "404": 6, "409": 2, "413": 2}


def test_other_requests_under_hooks_go_on_to_flask(http: Http) -> None:
    """A GET (405), a trailing slash (404), doubled slashes (Flask's redirect) and the git hook are Flask's."""
    assert http.client.get("/hooks/acme/contact-form").status_code == 405
    assert http.client.post("/hooks/acme/contact-form/", data=b"{}").status_code == 404
    assert http.client.post("/hooks//acme/contact-form", data=b"{}").status_code == 308
    assert http.client.post("/hooks/git", data=b"{}").status_code == 401
