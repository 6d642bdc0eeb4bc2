"""Webhook admission across two `wfctl serve` replicas on one PostgreSQL store, over real HTTP.

Every replica serves ``POST /hooks/<account>/<name>``; what must hold across them lives in the store
only: the accepted deliveries (a replay is refused by whichever replica sees it second), the rate-limit
window (counted under a per-workflow advisory lock) and the signing secret (read in the queueing
transaction under a shared row lock; decryptions are cached by ciphertext, so a rotated secret is a new
cache key). The product's rotation rule (controller/security/secrets.py): a rotation is instant, with no
grace period for the old secret; a sender that wants an overlap signs with both (Standard Webhooks
allows several signatures), and that is accepted once the new one is current.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from conftest import PG_SKIP, PG_URL, _pg_schema_url
from cryptography.fernet import Fernet
from gitutil import commit_files, make_repo
from httpkit import SET, WF, wf
from servers import free_port, ready, until
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from controller.security.signing import sign
from controller.store import open_store
from controller.store.tables import executions, rate_limit_drops, workflows

LIMIT = 5  # acme/limited: 5 per hour, so nothing leaves the window during the test
WORKFLOWS = {
    "replayed": wf("replayed", "{type: webhook}", SET),
    "limited": wf("limited", "{type: webhook}", SET, extra=f"  rateLimit: {{max: {LIMIT}, per: 1h}}\n"),
    "rotated": wf("rotated", "{type: webhook}", SET),
}


@dataclass
class Replicas:
    """Two serving replicas (``urls``) of one store, the CLI to reach it, and a manage token."""

    urls: list[str]
    db: str
    cli: list[str]
    env: dict[str, str]
    token: str = ""

    def wfctl(self, *args: str) -> Any:
        done = subprocess.run([*self.cli, *args, "--json"], env=self.env, capture_output=True, timeout=60, check=True)
        return json.loads(done.stdout)

    def count(self, table: Any, name: str) -> int:
        store = open_store(self.db, upgrade=False)
        try:
            with store.read() as conn:
                wid = conn.execute(select(workflows.c.id).where(workflows.c.key == f"acme/{name}")).scalar_one()
                column = table.c.dropped if table is rate_limit_drops else func.count()
                return int(conn.execute(select(column).where(table.c.workflow_id == wid)).scalar() or 0)
        finally:
            store.close()


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for the module's two replicas (SQLite has one process: nothing to share)."""
    if not PG_URL:
        pytest.skip(PG_SKIP)
    yield from _pg_schema_url(PG_URL)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Replicas]:
    tmp = tmp_path_factory.mktemp("replicas")
    repo = tmp / "repo"
    commit_files(make_repo(repo), {WF.format("acme", name): text for name, text in WORKFLOWS.items()}, "add")
    env = {**os.environ, "WFC_SECRET_KEY": Fernet.generate_key().decode()}  # one key for every replica

    def wfctl(data: str) -> list[str]:
        return [sys.executable, "-m", "controller", "--repo", str(repo), "--db", pg_url, "--data-dir", str(tmp / data)]

    subprocess.run([*wfctl("cli"), "sync"], check=True, capture_output=True, timeout=60, env=env)
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    processes = []
    for i, url in enumerate(urls):
        (tmp / f"r{i}").mkdir()
        with (tmp / f"r{i}" / "serve.log").open("wb") as log:  # read when a test fails
            processes.append(subprocess.Popen(
                [*wfctl(f"r{i}"), "-v", "serve", "--interval", "30", "--workers", "2", "--worker-processes", "0",
                 "--port", url.rsplit(":", 1)[1]], env=env, stdout=subprocess.DEVNULL, stderr=log))
    try:
        until(lambda: all(ready(url) for url in urls), timeout=40)
        found = Replicas(urls, pg_url, wfctl("cli"), env)
        found.token = found.wfctl("token", "create", "--account", "acme", "--user", "u_ops",
                                  "--permissions", "workflow.read,workflow.manage")["token"]
        yield found
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(20)


def _post(url: str, name: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{url}/hooks/acme/{name}", data=body, headers=headers, timeout=30)


def _signed(secret: str, body: bytes) -> dict[str, str]:
    """The ``X-Wfc-*`` headers of one delivery: the signature is the delivery's identity."""
    now = int(time.time())
    return {"X-Wfc-Timestamp": str(now), "X-Wfc-Signature": sign(secret, now, body), "Content-Type": "application/json"}


def _standard(message_id: str, body: bytes, *secrets: str) -> dict[str, str]:
    """Standard Webhooks headers, signed by its reference library, one signature per secret."""
    at = datetime.now(UTC)
    return {"webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())), "Content-Type": "application/json",
            "webhook-signature": " ".join(Webhook(s).sign(message_id, at, body.decode()) for s in secrets)}


def _at_once(calls: list[tuple[str, str, bytes, dict[str, str]]]) -> list[requests.Response]:
    """Send every (url, workflow, body, headers) at the same moment, one thread each; answers in order."""
    start = threading.Barrier(len(calls))

    def send(call: tuple[str, str, bytes, dict[str, str]]) -> requests.Response:
        start.wait()
        return _post(*call)

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(send, calls))


def _secret(replicas: Replicas, name: str) -> str:
    return str(replicas.wfctl("webhook", "rotate", f"acme/{name}")["secret"])


@pytest.mark.postgres
def test_one_delivery_sent_to_both_replicas_at_once_is_accepted_once(replicas: Replicas) -> None:
    """Each signed delivery, three copies to each replica at once: one 202, five 401 replays, one execution."""
    secret = _secret(replicas, "replayed")
    for n in range(4):
        body = json.dumps({"name": f"d{n}"}).encode()
        headers = _signed(secret, body) if n % 2 == 0 else _standard(f"msg_{n}", body, secret)
        answers = _at_once([(replicas.urls[i % 2], "replayed", body, headers) for i in range(6)])
        codes = Counter(a.status_code for a in answers)
        assert codes == {202: 1, 401: 5}, [(a.status_code, a.text) for a in answers]
        assert all("replayed request" in a.json()["error"]["message"] for a in answers if a.status_code == 401)
    late = json.dumps({"name": "d3"}).encode()  # a Standard resend: same webhook-id, signed again later
    for url in replicas.urls:
        again = _post(url, "replayed", late, _standard("msg_3", late, secret))
        assert again.status_code == 401 and "replayed request" in again.json()["error"]["message"]
    assert replicas.count(executions, "replayed") == 4


@pytest.mark.postgres
def test_the_rate_limit_holds_across_replicas_under_concurrent_deliveries(replicas: Replicas) -> None:
    """rateLimit 5 per 1h, 24 deliveries at once spread over both replicas: exactly 5 queued, 19 answered 429."""
    secret = _secret(replicas, "limited")
    bodies = [json.dumps({"name": f"l{n}"}).encode() for n in range(24)]
    answers = _at_once([(replicas.urls[n % 2], "limited", body, _signed(secret, body)) for n, body in enumerate(bodies)])
    codes = Counter(a.status_code for a in answers)
    assert codes == {202: LIMIT, 429: len(bodies) - LIMIT}, [(a.status_code, a.text) for a in answers]
    refused = [a for a in answers if a.status_code == 429]
    assert all(a.json()["error"]["code"] == "rate_limited" and int(a.headers["Retry-After"]) > 3000 for a in refused)
    assert replicas.count(executions, "limited") == LIMIT
    assert replicas.count(rate_limit_drops, "limited") == len(bodies) - LIMIT
    for url in replicas.urls:  # and still full afterwards, on either replica
        body = b'{"name": "after"}'
        assert _post(url, "limited", body, _signed(secret, body)).status_code == 429


@pytest.mark.postgres
def test_a_rotation_through_one_replica_holds_on_the_other_at_once(replicas: Replicas) -> None:
    """Rotated through A's API, B accepts the new secret and refuses the old one at once (no grace period),
    and the other way round; a sender signing with both during its switch is accepted."""
    old = _secret(replicas, "rotated")
    accepted = 0
    for n in range(3):
        for url in replicas.urls:  # both replicas have used (and cached) the current secret
            body = json.dumps({"name": f"warm{n}{url[-5:]}"}).encode()
            assert _post(url, "rotated", body, _signed(old, body)).status_code == 202
            accepted += 1
        through, other = (replicas.urls if n % 2 == 0 else replicas.urls[::-1])
        rotated = requests.post(f"{through}/api/v1/workflows/acme/rotated/webhook-secret",
                                headers={"Authorization": f"Bearer {replicas.token}"}, timeout=30)
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        for url in (other, through):
            stale = json.dumps({"name": f"stale{n}"}).encode()
            refused = _post(url, "rotated", stale, _signed(old, stale))
            assert refused.status_code == 401, refused.text
            assert "replayed" not in refused.json()["error"]["message"]
            fresh = json.dumps({"name": f"new{n}{url[-5:]}"}).encode()
            assert _post(url, "rotated", fresh, _signed(new, fresh)).status_code == 202
            both = json.dumps({"name": f"both{n}{url[-5:]}"}).encode()
            assert _post(url, "rotated", both, _standard(f"m{n}{url[-5:]}", both, old, new)).status_code == 202
            alone = _post(url, "rotated", both, _standard(f"o{n}{url[-5:]}", both, old))
            assert alone.status_code == 401
            accepted += 2
        shown = requests.get(f"{other}/api/v1/workflows/acme/rotated/webhook-secret",
                             headers={"Authorization": f"Bearer {replicas.token}"}, timeout=30).json()
        assert (shown["fingerprint"], shown["generation"]) == (rotated.json()["fingerprint"], rotated.json()["generation"])
        old = new
    assert replicas.count(executions, "rotated") == accepted
