"""Signed webhooks, signing-secret rotation and the git push hook, through Flask's test client."""

# mypy: disable-error-code=index
# (werkzeug types TestResponse.json as Any | None; these endpoints always answer JSON)

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from httpkit import GIT_SECRET, WF, Http, http_kit, wf

from controller.reconcile.reconciler import Reconciler
from controller.security import secrets
from controller.service import Controller, ServeOptions
from controller.source import GitSource
from controller.store import views
from webhooks import create_app


@pytest.fixture
def http(tmp_path: Path, store_url: str) -> Iterator[Http]:
    with http_kit(tmp_path, store_url) as h:
        yield h


def test_signed_webhook_queues_an_execution_with_the_body_as_trigger_payload(http: Http) -> None:
    """202 with the execution id; the JSON body is trigger.body of the execution."""
    answer = http.hook("acme/contact-form", {"name": "Ada", "email": "ada@example.com"})
    assert answer.status_code == 202, answer.json
    execution_id = answer.json["execution_id"]
    assert answer.headers["Location"] == f"/api/v1/executions/{execution_id}"
    http.kit.engine.run_until_idle()
    shown = http.kit.show(execution_id)
    assert shown["status"] == "succeeded"
    assert shown["trigger"] == {"type": "webhook", "body": {"name": "Ada", "email": "ada@example.com"}}
    assert http.kit.steps(execution_id)["note"]["output"] == {"who": "Ada"}


def test_bad_missing_or_stale_signatures_are_401_and_queue_nothing(http: Http) -> None:
    """Missing headers, a wrong HMAC, another secret, and timestamps over 300 s away are refused."""
    key, body = "acme/contact-form", b'{"name": "Eve"}'
    now = int(http.kit.clock.now().timestamp())
    good = http.signed(key, body)
    cases = {
        "no signature": {k: v for k, v in good.items() if k != "X-Wfc-Signature"},
        "no timestamp": {k: v for k, v in good.items() if k != "X-Wfc-Timestamp"},
        "wrong hmac": {**good, "X-Wfc-Signature": "sha256=" + "0" * 64},
        "not hex": {**good, "X-Wfc-Signature": "sha256=zz\u00e9"},
        "other secret": http.signed(key, body, secret="whsec_not-the-secret"),
        "stale": http.signed(key, body, at=now - 301),
        "future": http.signed(key, body, at=now + 301),
        "not a number": {**good, "X-Wfc-Timestamp": "yesterday"},
        "body changed": {**good},
    }
    for case, headers in cases.items():
        data = body + b" " if case == "body changed" else body
        answer = http.client.post(f"/hooks/{key}", data=data, headers=headers)
        assert answer.status_code == 401, case
        assert set(answer.json["error"]) == {"code", "message"}, case
    assert http.executions() == 0
    assert http.hook(key, {"x": 1}, at=now - 299).status_code == 202  # inside the window


def test_malformed_json_is_400_and_only_after_the_signature_is_checked(http: Http) -> None:
    """A signed body that is not storable JSON is 400; the same body unsigned is 401."""
    key = "acme/contact-form"
    for body in (b"{not json", b"", b"NaN", b'{"x": 1e999}', b'{"x": "\\u0000"}', b'{"\\ud800": 1}',
                 b"[" * 100 + b"]" * 100, b"\xff\xfe"):
        answer = http.hook(key, body=body)
        assert answer.status_code == 400, (body[:20], answer.json)
        assert answer.json["error"]["code"] == "bad_request"
        assert http.client.post(f"/hooks/{key}", data=body).status_code == 401
    assert http.executions() == 0
    for payload in ([1, 2], "text", None, {"deep": [[[[{"ok": True}]]]]}):
        assert http.hook(key, payload).status_code == 202


def test_unknown_or_not_webhook_workflows_are_404(http: Http) -> None:
    """A workflow that does not exist, or is started by another trigger, is not a webhook."""
    for key in ("acme/nope", "acme/greet", "nobody/contact-form"):
        answer = http.client.post(f"/hooks/{key}", data=b"{}", headers={"X-Wfc-Timestamp": "1"})
        assert answer.status_code == 404, key
        assert answer.json["error"]["code"] == "not_found"


def test_disabled_webhook_is_409(http: Http) -> None:
    """A correctly signed request to a disabled workflow is refused with 409, nothing queued."""
    answer = http.hook("acme/off", {"x": 1})
    assert answer.status_code == 409
    assert "disabled" in answer.json["error"]["message"]
    assert http.executions() == 0


def test_body_over_one_mebibyte_is_413(http: Http) -> None:
    """The limit is 1 MiB, checked before the signature."""
    big = b'"' + b"x" * (1024 * 1024) + b'"'
    answer = http.client.post("/hooks/acme/contact-form", data=big, headers=http.signed("acme/contact-form", big))
    assert answer.status_code == 413
    assert answer.json["error"]["code"] == "request_entity_too_large"
    exactly = b'"' + b"x" * (1024 * 1024 - 2) + b'"'
    assert http.hook("acme/contact-form", body=exactly).status_code == 202


def test_over_the_rate_limit_is_429_and_the_drop_is_counted(http: Http) -> None:
    """rateLimit {max: 2, per: 1m}: the third request in a minute is dropped, counted, and told when to retry."""
    token = http.token("workflow.read")
    assert [http.hook("acme/limited", {"n": n}).status_code for n in range(2)] == [202, 202]
    http.kit.clock.advance(seconds=20)
    refused = http.hook("acme/limited", {"n": 3})
    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "40"
    view = http.client.get("/api/v1/workflows/acme/limited", headers=http.auth(token)).json
    assert view["dropped"] == 1 and view["last_dropped_at"]
    assert http.executions() == 2
    http.kit.clock.advance(seconds=41)
    assert http.hook("acme/limited", {"n": 4}).status_code == 202
    assert http.hook("acme/contact-form", {"n": 5}).status_code == 202  # no rateLimit: not limited


def test_rotation_returns_the_new_secret_once_and_the_old_one_stops_working(http: Http) -> None:
    """POST makes a secret and shows it once; GET shows only its fingerprint; the rotation is audited."""
    key = "acme/contact-form"
    old = http.secret(key)
    manager = http.token("workflow.manage", name="ops")
    reader = http.token("workflow.read")
    assert http.client.post(f"/api/v1/workflows/{key}/webhook-secret", headers=http.auth(reader)).status_code == 403
    answer = http.client.post(f"/api/v1/workflows/{key}/webhook-secret", headers=http.auth(manager))
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    new = answer.json["secret"]
    assert new.startswith("whsec_") and new != old
    assert answer.json["fingerprint"] == secrets.fingerprint(new)
    shown = http.client.get(f"/api/v1/workflows/{key}/webhook-secret", headers=http.auth(reader)).json
    assert shown == {"workflow": key, "fingerprint": secrets.fingerprint(new), "created_at": answer.json["created_at"],
                     "generation": answer.json["generation"]}
    assert new not in json.dumps(shown)
    assert http.hook(key, {"x": 1}, secret=old).status_code == 401
    assert http.hook(key, {"x": 1}, secret=new).status_code == 202
    with http.kit.store.read() as conn:
        events = [e for e in views.audit(conn, key) if e["action"] == "secret_rotated"]
    assert events[0]["actor"] == "u_alice (API token ops)"
    assert events[0]["changes"] == [{"path": "webhook.secret", "old": secrets.fingerprint(old),
                                     "new": secrets.fingerprint(new)}]
    assert http.client.post("/api/v1/workflows/acme/greet/webhook-secret", headers=http.auth(manager)).status_code == 404


def test_a_webhook_workflow_gets_a_secret_when_first_applied(tmp_path: Path, store_url: str) -> None:
    """ensure_webhook_secrets makes one per active webhook workflow, once; the app makes a missing one on sight."""
    with http_kit(tmp_path, store_url, ensure=False) as http:
        first = http.client.post("/hooks/acme/contact-form", data=b"{}", headers=http.signed(
            "acme/contact-form", b"{}", secret="whsec_guess"))
        assert first.status_code == 401 and "no signing secret yet" in first.json["error"]["message"]
        made = secrets.ensure_webhook_secrets(http.kit.store, http.box, http.kit.clock.now())
        assert made == ["acme/limited", "acme/off", "globex/intake"]  # contact-form got its own just now
        assert secrets.ensure_webhook_secrets(http.kit.store, http.box) == []
        http.kit.deploy({WF.format("acme", "later"): wf("later", "{type: webhook}",
                                                        "    - {id: a, type: set, vars: {x: 1}}\n")})
        assert secrets.ensure_webhook_secrets(http.kit.store, http.box) == ["acme/later"]
        with http.kit.store.read() as conn:
            assert secrets.describe(conn, "acme/later").generation == 1
            assert views.audit(conn, "acme/later")[0]["action"] == "secret_created"
            stored = conn.exec_driver_sql("SELECT ciphertext FROM webhook_secrets").scalars().all()
        assert all(not value.startswith(secrets.PREFIX) for value in stored)  # encrypted at rest


def _github(body: bytes, secret: str = GIT_SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            "X-GitHub-Event": "push"}


def test_git_push_hook_checks_github_and_gitlab_signatures(http: Http, tmp_path: Path) -> None:
    """Only a correct X-Hub-Signature-256 or X-Gitlab-Token starts a pass; unconfigured, the hook is 404."""
    body = b'{"ref": "refs/heads/main"}'
    assert http.client.post("/hooks/git", data=body, headers=_github(body)).status_code == 503  # no controller here
    assert http.client.post("/hooks/git", data=body, headers=_github(body, "wrong")).status_code == 401
    assert http.client.post("/hooks/git", data=body, headers={"X-Gitlab-Token": "wrong"}).status_code == 401
    assert http.client.post("/hooks/git", data=body).status_code == 401
    unconfigured = create_app(http.settings, http.kit.store, http.kit.engine,
                              environ={secrets.KEY_ENV: _fresh_key()}).test_client()
    assert unconfigured.post("/hooks/git", data=body, headers=_github(body)).status_code == 404


def _fresh_key() -> str:
    return Fernet.generate_key().decode()


class CountingReconciler(Reconciler):
    """A real reconciler that counts its passes."""

    passes = 0

    def sync(self):  # type: ignore[no-untyped-def]
        self.passes += 1
        return super().sync()


def test_git_push_hook_starts_a_pass_at_once_and_bursts_coalesce(tmp_path: Path, sqlite_url: str) -> None:
    """A push hook applies a new commit without waiting for the poll interval; ten hooks are not ten passes.

    SQLite only: on PostgreSQL the controller's leader lock is shared by every test run on the server.
    """
    with http_kit(tmp_path, sqlite_url) as http, GitSource(str(http.kit.path), data_dir=http.kit.data_dir) as source:
        reconciler = CountingReconciler(source, http.kit.store, clock=http.kit.clock.now)
        controller = Controller(reconciler, http.kit.engine, ServeOptions(interval=3600, workers=0))
        app = create_app(http.settings, http.kit.store, http.kit.engine, controller=controller,
                         environ={secrets.KEY_ENV: _fresh_key(), "WFC_GIT_WEBHOOK_SECRET": GIT_SECRET})
        controller.start()
        try:
            _until(lambda: reconciler.passes == 1)
            http.kit.commit({WF.format("acme", "pushed"): wf("pushed", "{type: webhook}",
                                                             "    - {id: a, type: set, vars: {x: 1}}\n")})
            body = b'{"ref": "refs/heads/main"}'
            client = app.test_client()
            answers = [client.post("/hooks/git", data=body, headers=_github(body)) for _ in range(10)]
            assert {a.status_code for a in answers} == {202}
            assert client.post("/hooks/git", data=body, headers={"X-Gitlab-Token": GIT_SECRET}).status_code == 202

            def applied() -> bool:
                with http.kit.store.read() as conn:
                    return any(w["id"] == "acme/pushed" for w in views.status(conn)["workflows"])

            _until(applied)
            time.sleep(0.3)
            assert 2 <= reconciler.passes <= 3
        finally:
            controller.stop()


def _until(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_concurrent_signed_requests_in_one_process_all_land(http: Http) -> None:
    """Sixteen threads of signed requests through one app: every one is queued exactly once."""
    key = "acme/contact-form"
    secret = http.secret(key)
    statuses: list[int] = []

    def send(n: int) -> None:
        client = http.app.test_client()
        for i in range(5):
            body = json.dumps({"n": n, "i": i}).encode()
            statuses.append(client.post(f"/hooks/{key}", data=body,
                                        headers=http.signed(key, body, secret=secret)).status_code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [202] * 80
    assert http.executions() == 80


@pytest.mark.parametrize("known", [False, True], ids=["first delivery", "secret known to intake"])
def test_a_request_racing_an_uncommitted_rotation_is_checked_against_the_new_secret(http: Http, known: bool) -> None:
    """While a rotation's transaction is open the intake waits for it, then refuses the old secret; also when
    an earlier delivery made intake check signatures under the old secret before the write lock."""
    key, body = "acme/contact-form", b'{"race": true}'
    if known:
        assert http.hook(key, {"n": 1}, secret=http.secret(key)).status_code == 202
    headers = http.signed(key, body, secret=http.secret(key))
    answers: list[int] = []
    racer = threading.Thread(target=lambda: answers.append(
        http.app.test_client().post(f"/hooks/{key}", data=body, headers=headers).status_code))
    with http.kit.store.tx() as conn:
        secrets.rotate(conn, http.box, key, actor="test", now=http.kit.clock.now())
        racer.start()
        racer.join(0.3)
        assert racer.is_alive()  # held by the rotation's lock, not answered from the old secret
    racer.join(10)
    assert answers == [401]
    assert http.executions() == int(known)
