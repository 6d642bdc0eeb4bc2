"""Standard Webhooks (standardwebhooks.com) on ``POST /hooks/<account>/<name>``: signed by the reference library.

The sender side is the ``standardwebhooks`` package itself (what Svix, Clerk and Resend publish), so
these tests prove interoperability, not agreement with our own reading of the spec.
"""

# mypy: disable-error-code=index

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from httpkit import Http, http_kit
from standardwebhooks.webhooks import Webhook

from controller.security import secrets
from controller.security.signing import check_standard_signature

KEY = "acme/contact-form"


@pytest.fixture
def http(tmp_path: Path, store_url: str) -> Iterator[Http]:
    with http_kit(tmp_path, store_url) as h:
        yield h


def _headers(secret: str, message_id: str, body: bytes, at: datetime, *extra_secrets: str) -> dict[str, str]:
    """What a Standard Webhooks sender sends; with ``extra_secrets``, one signature per secret (a rotation)."""
    signatures = [Webhook(s).sign(message_id, at, body.decode()) for s in (*extra_secrets, secret)]
    return {"webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": " ".join(signatures), "Content-Type": "application/json"}


def _count(http: Http) -> int:
    with http.kit.store.read() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM executions").scalar() or 0)


def test_a_delivery_signed_by_the_standard_library_is_queued_and_runs(http: Http) -> None:
    """The workflow's secret as printed configures the library; the body becomes trigger.body."""
    secret, body = http.secret(KEY), json.dumps({"name": "Ada"}).encode()
    Webhook(secret).verify(body, _headers(secret, "msg_1", body, datetime.now(UTC)))  # the library accepts the form
    answer = http.client.post(f"/hooks/{KEY}", data=body, headers=_headers(secret, "msg_1", body, http.kit.clock.now()))
    assert answer.status_code == 202, answer.json
    http.kit.engine.run_until_idle()
    shown = http.kit.show(answer.json["execution_id"])
    assert shown["status"] == "succeeded" and shown["trigger"]["body"] == {"name": "Ada"}


def test_the_same_message_id_is_a_replay_even_signed_again_later(http: Http) -> None:
    """webhook-id is the replay key: a resend of msg_2 with a new timestamp and signature queues nothing."""
    secret, body = http.secret(KEY), b'{"name": "Bo"}'
    first = http.client.post(f"/hooks/{KEY}", data=body, headers=_headers(secret, "msg_2", body, http.kit.clock.now()))
    assert first.status_code == 202
    http.kit.clock.advance(seconds=30)
    again = http.client.post(f"/hooks/{KEY}", data=body, headers=_headers(secret, "msg_2", body, http.kit.clock.now()))
    assert again.status_code == 401 and "replayed request" in again.json["error"]["message"]
    other = http.client.post(f"/hooks/{KEY}", data=body, headers=_headers(secret, "msg_3", body, http.kit.clock.now()))
    assert other.status_code == 202
    assert _count(http) == 2


def test_during_a_rotation_overlap_either_signature_may_be_the_current_one(http: Http) -> None:
    """A sender signing with the old and the new secret is accepted once rotated; the old alone is refused."""
    old, body = http.secret(KEY), b'{"name": "Cy"}'
    with http.kit.store.tx() as conn:
        new = secrets.rotate(conn, http.box, KEY, actor="test", now=http.kit.clock.now()).secret
    now = http.kit.clock.now()
    both = http.client.post(f"/hooks/{KEY}", data=body, headers=_headers(new, "msg_4", body, now, old))
    assert both.status_code == 202, both.json
    stale = http.client.post(f"/hooks/{KEY}", data=body, headers=_headers(old, "msg_5", body, now))
    assert stale.status_code == 401 and "no signature in webhook-signature matches" in stale.json["error"]["message"]


def test_bad_standard_deliveries_are_401_with_the_reason_and_queue_nothing(http: Http) -> None:
    """Missing id, stale or future timestamp, tampered body, malformed or too many signatures."""
    secret, body = http.secret(KEY), b'{"name": "Eve"}'
    now = http.kit.clock.now()
    good = _headers(secret, "msg_6", body, now)
    cases = {
        "no id": ({k: v for k, v in good.items() if k != "webhook-id"}, body, "missing or over-long webhook-id"),
        "long id": ({**good, "webhook-id": "m" * 300}, body, "over-long webhook-id"),
        "no timestamp": ({k: v for k, v in good.items() if k != "webhook-timestamp"}, body, "missing webhook-timestamp"),
        "stale": (_headers(secret, "msg_6", body, datetime.fromtimestamp(now.timestamp() - 301, UTC)), body,
                  "behind the server's clock"),
        "tampered": (good, b'{"name": "Mallory"}', "no signature in webhook-signature matches"),
        "malformed": ({**good, "webhook-signature": "v1,!!! v2,abc nonsense"}, body, "matches"),
        "v1a only": ({**good, "webhook-signature": "v1a," + base64.b64encode(b"x" * 64).decode()}, body, "matches"),
        "too many": ({**good, "webhook-signature": " ".join([good["webhook-signature"]] * 11)}, body,
                     "carries 11 signatures"),
    }
    for name, (headers, sent, reason) in cases.items():
        answer = http.client.post(f"/hooks/{KEY}", data=sent, headers=headers)
        assert answer.status_code == 401, name
        assert reason in answer.json["error"]["message"], (name, answer.json)
    assert _count(http) == 0
    assert http.client.post(f"/hooks/{KEY}", data=body, headers=good).status_code == 202  # still fresh


def test_the_wfc_scheme_still_works_beside_it_with_the_same_secret(http: Http) -> None:
    """X-Wfc-* headers win when both are sent; the same whsec_ secret signs either way."""
    body = b'{"name": "Di"}'
    assert http.hook(KEY, body=body).status_code == 202
    both = {**_headers(http.secret(KEY), "msg_7", body, http.kit.clock.now()),
            **http.signed(KEY, body), "X-Wfc-Signature": "sha256=" + "0" * 64}
    assert http.client.post(f"/hooks/{KEY}", data=body, headers=both).status_code == 401  # X-Wfc checked, and wrong


def test_published_test_vector() -> None:
    """The example of the Standard Webhooks specification verifies (and a changed byte does not)."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    check_standard_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body, signature)
    with pytest.raises(Exception, match="matches"):
        check_standard_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265331", body, signature)


def test_new_secrets_are_in_the_standard_form() -> None:
    """whsec_ and standard base64 of 32 random bytes: what every Standard Webhooks library decodes."""
    made = secrets.new_secret()
    assert made.startswith("whsec_") and len(base64.b64decode(made[6:], validate=True)) == 32
