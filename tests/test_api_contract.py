"""The OpenAPI document and the running server agree: schemathesis against a live ``wfctl serve``.

Schemathesis generates requests from ``GET /api/v1/openapi.json`` (schema-valid ones, and ones that
break it on purpose) and checks every answer: no 5xx, only documented statuses and content types,
bodies matching their schemas, invalid input refused, valid input accepted. Bounded (a fixed seed, a
few examples per operation) so it stays well under a minute; ``WFC_SCHEMATHESIS_EXAMPLES`` runs more.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from gitutil import commit_files, make_repo
from servers import free_port, ready, until

from controller.security.signing import sign

ROOT = Path(__file__).resolve().parent.parent
ST = Path(sys.executable).with_name("st")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real `wfctl serve` on the bundled example with a directory, a record, an execution; (url, admin token)."""
    repo = tmp_path / "repo"
    files = {str(p.relative_to(ROOT)): p.read_text() for p in (ROOT / "workflows.d").rglob("*.yaml")}
    commit_files(make_repo(repo), files, "the bundled example")
    env = {k: v for k, v in os.environ.items() if k != "WFC_SECRET_KEY"}  # the data dir's key file
    base = [sys.executable, "-m", "controller", "--repo", str(repo), "--data-dir", str(tmp_path / "data")]

    def wfctl(*args: str) -> str:
        done = subprocess.run([*base, *args], check=False, capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    wfctl("sync")
    wfctl("directory", "load", str(ROOT / "deploy" / "directory" / "acme.yaml"), "--account", "acme")
    token = wfctl("token", "create", "--account", "acme", "--user", "u_alice", "--permissions", "admin")
    secret = wfctl("webhook", "rotate", "acme/website-contact-form")
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([*base, "serve", "--port", str(port), "--interval", "5", "--worker-processes", "0"],
                              env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        until(lambda: ready(url), timeout=60)
        auth = {"Authorization": f"Bearer {token}"}
        body = json.dumps({"email": "ada@example.com", "name": "Ada", "message": "Hi"}).encode()
        at = int(time.time())
        hooked = requests.post(f"{url}/hooks/acme/website-contact-form", data=body, timeout=10, headers={
            "X-Wfc-Timestamp": str(at), "X-Wfc-Signature": sign(secret, at, body)})
        assert hooked.json() == {"execution_id": 1}
        made = requests.post(f"{url}/api/v1/accounts/acme/records/ticket", json={"title": "Printer"}, headers=auth,
                             timeout=10)
        assert made.status_code == 201 and made.json()["record"]["id"] == "1"
        yield url, token
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.skipif(shutil.which("st", path=str(ST.parent)) is None, reason="schemathesis is not installed")
def test_schemathesis_finds_no_disagreement_between_the_document_and_the_server(served: tuple[str, str],
                                                                                tmp_path: Path) -> None:
    """Every check of schemathesis over every operation passes against the live server."""
    url, token = served
    url_dir = tmp_path  # schemathesis keeps its example database (.schemathesis/) in the working folder
    examples = os.environ.get("WFC_SCHEMATHESIS_EXAMPLES", "5")
    done = subprocess.run(
        [str(ST), "--config-file", str(Path(__file__).with_name("schemathesis.toml")), "run",
         f"{url}/api/v1/openapi.json", "--header", f"Authorization: Bearer {token}", "--checks", "all",
         "--max-examples", examples, "--seed", "17", "--generation-allow-x00", "false",
         "--phases", "examples,coverage,fuzzing"],
        check=False, capture_output=True, text=True, timeout=240, cwd=url_dir)
    log = (tmp_path / "serve.log").read_text(errors="replace")  # what the server said meanwhile (its errors)
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-2000:] + "\nserve's log:\n" + log[-4000:]
