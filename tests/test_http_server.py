"""A real waitress server on 127.0.0.1: signed webhooks from `requests`, rotation racing traffic,
replays, oversized bodies."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from httpkit import Http, http_kit

from controller.security.signing import sign
from controller.store import views
from webhooks import ServerHandle, start_server

KEY = "acme/contact-form"


@pytest.fixture
def served(tmp_path: Path, store_url: str) -> Iterator[tuple[Http, ServerHandle]]:
    with http_kit(tmp_path, store_url) as http:
        handle = start_server(http.app, "127.0.0.1", 0, threads=8)
        try:
            yield http, handle
        finally:
            handle.stop()


def test_a_signed_webhook_from_requests_is_queued_and_a_replay_is_refused(served: tuple[Http, ServerHandle]) -> None:
    """202 for a signed request; the same bytes sent again 301 s later are stale: 401, nothing queued."""
    http, server = served
    body = json.dumps({"name": "Ada"}).encode()
    headers = http.signed(KEY, body)
    answer = requests.post(f"{server.url}/hooks/{KEY}", data=body, headers=headers, timeout=10)
    assert answer.status_code == 202
    execution_id = answer.json()["execution_id"]
    with http.kit.store.read() as conn:
        assert views.execution(conn, execution_id)["trigger"]["body"] == {"name": "Ada"}
    http.kit.clock.advance(seconds=301)
    replayed = requests.post(f"{server.url}/hooks/{KEY}", data=body, headers=headers, timeout=10)
    assert replayed.status_code == 401
    assert "stale or replayed" in replayed.json()["error"]["message"]
    assert http.executions() == 1


def test_the_same_signed_delivery_sent_again_at_once_is_refused(served: tuple[Http, ServerHandle]) -> None:
    """Inside the timestamp window, the very same signed request is a replay: 401, queued once."""
    http, server = served
    body = json.dumps({"name": "Grace"}).encode()
    headers = http.signed(KEY, body)
    assert requests.post(f"{server.url}/hooks/{KEY}", data=body, headers=headers, timeout=10).status_code == 202
    again = requests.post(f"{server.url}/hooks/{KEY}", data=body, headers=headers, timeout=10)
    assert again.status_code == 401 and "replayed request" in again.json()["error"]["message"]
    http.kit.clock.advance(seconds=1)
    fresh = requests.post(f"{server.url}/hooks/{KEY}", data=body, headers=http.signed(KEY, body), timeout=10)
    assert fresh.status_code == 202  # the same body, signed anew, is a new delivery
    assert http.executions() == 2


def test_a_two_mebibyte_body_is_413(served: tuple[Http, ServerHandle]) -> None:
    """The whole 2 MiB arrive, the answer is 413 JSON, and the server keeps serving."""
    http, server = served
    body = b'{"blob": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    answer = requests.post(f"{server.url}/hooks/{KEY}", data=body, headers=http.signed(KEY, body), timeout=10)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request_entity_too_large"
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    assert http.executions() == 0


def test_after_a_rotation_answers_no_request_with_the_old_secret_is_accepted(
        served: tuple[Http, ServerHandle]) -> None:
    """Senders keep signing with the old secret while it is rotated: once the rotation has answered,
    every old-secret request is 401, and every old-secret execution was queued before any new-secret one."""
    http, server = served
    old = http.secret(KEY)
    manager = http.auth(http.token("workflow.manage"))
    url = f"{server.url}/hooks/{KEY}"
    rotated = threading.Event()
    stop = threading.Event()
    outcomes: list[tuple[bool, int]] = []  # (sent after the rotation answered, status)
    now = int(http.kit.clock.now().timestamp())
    deliveries = itertools.count()  # each delivery distinct: the same one sent twice is a replay

    def send() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                after = rotated.is_set()
                body = json.dumps({"secret": "old", "after": after, "n": next(deliveries)}).encode()
                answer = session.post(url, data=body, timeout=10, headers={
                    "X-Wfc-Timestamp": str(now), "X-Wfc-Signature": sign(old, now, body)})
                outcomes.append((after, answer.status_code))

    senders = [threading.Thread(target=send) for _ in range(6)]
    for thread in senders:
        thread.start()
    _until(lambda: sum(status == 202 for _, status in outcomes) >= 20)
    answer = requests.post(f"{server.url}/api/v1/workflows/{KEY}/webhook-secret", headers=manager, timeout=10)
    rotated.set()
    assert answer.status_code == 200
    new = answer.json()["secret"]
    body = json.dumps({"secret": "new"}).encode()  # queued after the rotation answered: a marker in id order
    fresh = requests.post(url, data=body, timeout=10, headers={"X-Wfc-Timestamp": str(now),
                                                                "X-Wfc-Signature": sign(new, now, body)})
    _until(lambda: sum(after for after, _ in outcomes) >= 30)
    stop.set()
    for thread in senders:
        thread.join()
    assert fresh.status_code == 202
    assert {status for _, status in outcomes} <= {202, 401}
    assert {status for after, status in outcomes if after} == {401}
    with http.kit.store.read() as conn:
        rows = views.executions_list(conn, workflow=KEY, limit=100_000)
    old_ids = [r["id"] for r in rows if r["trigger"]["body"]["secret"] == "old"]
    new_ids = [r["id"] for r in rows if r["trigger"]["body"]["secret"] == "new"]
    assert len(old_ids) == sum(status == 202 for _, status in outcomes)
    assert max(old_ids) < min(new_ids)
    assert not any(r["trigger"]["body"].get("after") for r in rows)


def _until(check, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_stop_closes_the_listening_socket(tmp_path: Path, sqlite_url: str) -> None:
    """After stop() the port refuses connections, and stop() twice is harmless."""
    with http_kit(tmp_path, sqlite_url) as http:
        server = start_server(http.app, "127.0.0.1", 0, threads=2)
        assert requests.get(f"{server.url}/healthz", timeout=10).json() == {"status": "ok"}
        server.stop()
        server.stop()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{server.url}/healthz", timeout=2)


def test_starting_and_stopping_under_load_fifty_times_is_clean(caplog: pytest.LogCaptureFixture) -> None:
    """stop() while keep-alive clients keep sending: no error in stop, none in the request threads, port freed."""
    import logging
    import threading
    import time
    from typing import Any

    import requests

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        time.sleep(0.001)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with caplog.at_level(logging.ERROR):
        for _ in range(50):
            server = start_server(app, "127.0.0.1", 0, threads=4)
            done = threading.Event()

            def hammer(url: str = server.url, done: threading.Event = done) -> None:
                session = requests.Session()
                while not done.is_set():
                    try:
                        session.get(f"{url}/x", timeout=1)
                    except requests.RequestException:
                        pass

            clients = [threading.Thread(target=hammer) for _ in range(3)]
            for client in clients:
                client.start()
            time.sleep(0.01)
            server.stop()
            done.set()
            for client in clients:
                client.join(5)
            with pytest.raises(requests.ConnectionError):
                requests.get(f"{server.url}/x", timeout=1)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []  # ("queue depth" warns)
