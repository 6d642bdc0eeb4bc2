"""Secrets never leak: a real `wfctl serve` run that uses every secret, then a scan of everything it shows.

The secrets: ``WFC_SECRET_KEY``, a webhook signing secret, an API token, the SMTP password (read from
the environment at send time), ``WFC_GIT_WEBHOOK_SECRET``, ``WFC_METRICS_TOKEN``, and secret headers a
workflow sends with ``http.request``. Where they may not appear: the log at ``-vv``, every API answer
(error messages included), execution traces, exports, ``/metrics``, the CLI's output, and the store
file in plain text. The one exception: a header value written literally in a definition is shown
wherever the definition is (versions, audit, export), as git shows it; never in a trace. Each secret is also sent where it does not belong (a token in a signature header,
the webhook secret as a bearer token) so refusals are scanned too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet
from gitutil import commit_files, make_repo
from servers import ALLOW_LOOPBACK, HttpServer, SmtpServer, free_port, http_server, ready, smtp_server, until

from controller.security.signing import sign

SMTP_USER, SMTP_PASSWORD = "mailer", "smtp-pass-Zq81x"
HEADER_SECRET, API_KEY = "hdr-bearer-Kx7Pq2", "api-key-Wm4Nr9"
GIT_SECRET, METRICS_TOKEN = "git-hook-secret-Lp3Vt6", "metrics-token-Hs5Qd8"


def _workflow(target: str) -> str:
    return f"""apiVersion: workflows/v1
kind: Workflow
metadata: {{name: leak}}
spec:
  trigger: {{type: webhook}}
  actions:
    - id: call
      type: http.request
      method: POST
      url: "{target}/crm"
      headers: {{Authorization: "Bearer {HEADER_SECRET}", X-Api-Key: "{API_KEY}", Accept: application/json}}
      json: {{name: "{{{{ trigger.body.name }}}}"}}
    - id: mail
      type: email.send
      mailbox: mailbox:mb_smtp
      to: ada@example.com
      subject: "Hello {{{{ trigger.body.name }}}}"
      body: "Thanks"
"""


def _directory(smtp: SmtpServer) -> str:
    return f"""users:
  - {{id: u_alice, email: alice@acme.test, permissions: [admin]}}
mailboxes:
  - id: mb_smtp
    address: support@acme.test
    kind: smtp
    smtp: {{host: 127.0.0.1, port: {smtp.port}, starttls: false, username: {SMTP_USER}, password_env: WFC_TEST_SMTP_PW}}
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Path, HttpServer, SmtpServer]]:
    with http_server() as crm, smtp_server(auth=(SMTP_USER, SMTP_PASSWORD)) as smtp:
        yield tmp_path, crm, smtp


def test_no_secret_appears_in_logs_answers_traces_exports_metrics_or_the_store(
        world: tuple[Path, HttpServer, SmtpServer]) -> None:
    tmp, crm, smtp = world
    repo, data = tmp / "repo", tmp / "data"
    commit_files(make_repo(repo), {"workflows.d/acme/leak.yaml": _workflow(crm.url)}, "add leak")
    (tmp / "config.yaml").write_text(ALLOW_LOOPBACK)
    (tmp / "directory.yaml").write_text(_directory(smtp))
    secret_key = Fernet.generate_key().decode()
    env = {**os.environ, "WFC_SECRET_KEY": secret_key, "WFC_TEST_SMTP_PW": SMTP_PASSWORD,
           "WFC_GIT_WEBHOOK_SECRET": GIT_SECRET, "WFC_METRICS_TOKEN": METRICS_TOKEN}
    base = [sys.executable, "-m", "controller", "--repo", str(repo), "--data-dir", str(data),
            "--config", str(tmp / "config.yaml")]
    shown: list[str] = []  # everything a user or a scraper gets to see

    def wfctl(*args: str) -> str:
        done = subprocess.run([*base, *args], check=False, capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        shown.append(done.stderr)
        return done.stdout

    wfctl("sync")
    wfctl("directory", "load", str(tmp / "directory.yaml"), "--account", "acme")
    hook_secret = wfctl("webhook", "rotate", "acme/leak").strip()  # stdout: shown this once, by design
    token = wfctl("token", "create", "--account", "acme", "--user", "u_alice", "--permissions", "admin").strip()
    port = free_port()
    log = tmp / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen([*base, "-vv", "serve", "--port", str(port), "--interval", "1"], env=env,
                                  stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    try:
        until(lambda: ready(url), timeout=60)
        body = json.dumps({"name": "Ada"}).encode()
        at = int(time.time())
        answers = [requests.post(f"{url}/hooks/acme/leak", data=body, timeout=10,
                                 headers={"X-Wfc-Timestamp": str(at), "X-Wfc-Signature": sign(hook_secret, at, body)})]
        assert answers[0].status_code == 202, answers[0].text
        execution = answers[0].json()["execution_id"]
        until(lambda: requests.get(f"{url}/api/v1/executions/{execution}", headers=auth, timeout=10)
              .json()["status"] == "succeeded", timeout=60)
        assert crm.requests[0].headers["Authorization"] == f"Bearer {HEADER_SECRET}"  # sent for real
        assert smtp.messages and smtp.messages[0].login == SMTP_USER  # logged in with the password
        misplaced = [  # each secret where it does not belong: the refusals are scanned too
            ("POST", "/hooks/acme/leak", {"X-Wfc-Timestamp": hook_secret, "X-Wfc-Signature": token}, body),
            ("POST", "/hooks/acme/leak", {"X-Wfc-Timestamp": str(at), "X-Wfc-Signature": hook_secret}, body),
            ("POST", "/hooks/acme/leak", {"webhook-id": token, "webhook-timestamp": str(at),
                                          "webhook-signature": f"v1,{hook_secret}"}, body),
            ("GET", "/api/v1/workflows", {"Authorization": f"Bearer {hook_secret}"}, b""),
            ("GET", "/api/v1/workflows", {"Authorization": f"Bearer {token}x"}, b""),
            ("GET", "/metrics", {"Authorization": f"Bearer {token}"}, b""),
            ("POST", "/hooks/git", {"X-Gitlab-Token": GIT_SECRET + "x"}, b"{}"),
            ("POST", "/hooks/git", {"X-Hub-Signature-256": "sha256=" + GIT_SECRET}, b"{}"),
            ("GET", f"/ui/acme/executions/{execution}", {"Cookie": f"wfctl_ui={token}"}, b""),
        ]
        for method, path, headers, sent in misplaced:
            answers.append(requests.request(method, f"{url}{path}", headers=headers, data=sent, timeout=10))
        for path in ("/api/v1/workflows", "/api/v1/workflows/acme/leak/webhook-secret", "/api/v1/executions",
                     f"/api/v1/executions/{execution}", "/api/v1/accounts/acme/directory", "/api/v1/alerts",
                     f"/ui/acme/executions/{execution}"):
            answers.append(requests.get(f"{url}{path}", headers=auth, timeout=10))
        answers.append(requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10))
        assert answers[-1].status_code == 200 and "wfctl_" in answers[-1].text
        shown += [f"{a.status_code} {dict(a.headers)} {a.text}" for a in answers]
        shown.append(wfctl("executions", "show", str(execution), "--json"))
        shown.append(wfctl("status"))
        shown.append(wfctl("token", "list", "--account", "acme", "--json"))
        # The definition as committed (versions, audit, export) shows what git shows, literal headers included.
        definition = [requests.get(f"{url}/api/v1/workflows/acme/leak{tail}", headers=auth, timeout=10).text
                      for tail in ("", "/versions", "/audit", "/export")]
        definition += [wfctl("export", "acme/leak"), wfctl("audit", "acme/leak")]
    finally:
        server.terminate()
        server.wait(timeout=30)
    shown.append(log.read_text(errors="replace"))
    store = b"".join(p.read_bytes() for p in data.glob("wfctl.db*"))
    with sqlite3.connect(data / "wfctl.db") as db:  # the runtime tables; versions hold the definition as committed
        runtime = "\n".join(str(row) for table in ("executions", "execution_steps", "trigger_decisions", "alerts")
                            for row in db.execute(f"SELECT * FROM {table}"))
    secrets = {"WFC_SECRET_KEY": secret_key, "webhook secret": hook_secret, "API token": token,
               "SMTP password": SMTP_PASSWORD, "git hook secret": GIT_SECRET, "metrics token": METRICS_TOKEN,
               "Authorization header": HEADER_SECRET, "X-Api-Key header": API_KEY}
    text, committed = "\n".join(shown), "\n".join(definition)
    assert len(text) > 10_000 and "leak" in text and HEADER_SECRET in committed  # the scan looked at something
    leaked = {name: _around(text, value) for name, value in secrets.items() if value in text}
    leaked |= {name: _around(committed, value) for name, value in secrets.items()
               if value in committed and value not in (HEADER_SECRET, API_KEY)}
    assert not leaked, leaked
    stored = [name for name, value in secrets.items() if value.encode() in store and value not in (HEADER_SECRET, API_KEY)]
    stored += [name for name, value in secrets.items() if value in runtime]
    assert not stored and "Kx7Pq2" not in runtime and "call" in runtime, f"in the store in plain text: {stored}"


def _around(text: str, value: str) -> Any:
    at = text.index(value)
    return text[max(0, at - 200): at + len(value) + 50]
