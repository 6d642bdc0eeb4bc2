"""Runs the README's shell blocks in order, as a newcomer would, in a temporary clone of this repository.

A block runs in a fresh ``bash -e -o pipefail`` in the folder where the previous block ended (a
``cd`` carries over), with ``wfctl`` on the PATH (the clone gets a ``.venv/bin/activate`` that puts
this interpreter's ``bin`` first, so ``. .venv/bin/activate`` works as written). An HTML comment
just before a block steers it:

- ``<!-- readme-test: skip (why) -->``: not run (installing, benchmarks);
- ``<!-- readme-test: background from "TEXT" -->``: the block from TEXT on runs in the background
  (``wfctl serve``), stopped by its pid at the end; the runner waits until it has synced;
- ``<!-- readme-test: second terminal -->``: starts in the clone's folder, as a second terminal would.

A line whose comment says ``[exit N]`` may exit N; any other non-zero exit fails the run. The
service's port is swapped for a free one (``WFC_PORT``, and ``localhost:8080`` in the blocks), so
runs never collide.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

_BLOCK = re.compile(r"(?:<!-- readme-test: (?P<directive>[^\n]*?) -->\n)?^```sh\n(?P<body>.*?)^```", re.DOTALL | re.MULTILINE)
_EXPECTED = re.compile(r"^(?P<command>[^#\n]*?)\s*(?P<comment>#[^\n]*\[exit (?P<code>\d)\][^\n]*)$", re.MULTILINE)


@dataclass
class Block:
    line: int
    directive: str
    body: str


def blocks(text: str) -> list[Block]:
    return [Block(text.count("\n", 0, m.start("body")) + 1, (m.group("directive") or "").strip(), m.group("body"))
            for m in _BLOCK.finditer(text)]


def script(body: str, port: int) -> str:
    """The block as bash runs it: expected exits tolerated, the port swapped."""
    body = body.replace("localhost:8080", f"localhost:{port}")
    return _EXPECTED.sub(lambda m: f"{m.group('command')} || test $? -eq {m.group('code')}  {m.group('comment')}", body)


@dataclass
class Outcome:
    block: Block
    returncode: int
    output: str


def run(readme: Path, clone: Path, port: int, *, timeout: float = 180.0) -> list[Outcome]:
    env = {**os.environ, "WFC_PORT": str(port), "NO_COLOR": "1", "GIT_AUTHOR_NAME": "Newcomer",
           "GIT_AUTHOR_EMAIL": "newcomer@example.com", "GIT_COMMITTER_NAME": "Newcomer",
           "GIT_COMMITTER_EMAIL": "newcomer@example.com", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("WFC_DATABASE_URL", None)
    (clone / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
    (clone / ".venv" / "bin" / "activate").write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    outcomes: list[Outcome] = []
    background: list[subprocess.Popen[bytes]] = []
    cwd = clone
    try:
        for block in blocks(readme.read_text()):
            if block.directive.startswith("skip"):
                continue
            if block.directive == "second terminal":
                cwd = clone
            if block.directive.startswith("background from "):
                start = block.directive.removeprefix("background from ").strip('"')
                body = block.body[block.body.index(start):]  # what comes before installs: done here already
                log = (clone.parent / f"background-{block.line}.log").open("wb")
                background.append(subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", script(body, port)],
                                                   cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True))
                _until_serving(port, cwd, env, background[-1])
                continue
            marker = clone.parent / "pwd"
            done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script(block.body, port) + f'\npwd > "{marker}"'],
                                  cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
            outcomes.append(Outcome(block, done.returncode, done.stdout + done.stderr))
            if done.returncode != 0:
                break
            cwd = Path(marker.read_text().strip())
    finally:
        for process in background:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGKILL)
    return outcomes


def _until_serving(port: int, cwd: Path, env: dict[str, str], process: subprocess.Popen[bytes],
                   timeout: float = 60.0) -> None:
    """Until the service answers and its first reconcile pass has applied the workflows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the background block exited with {process.returncode}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                status = subprocess.run(["wfctl", "status", "--json"], cwd=cwd, env=env, capture_output=True,
                                        text=True, timeout=30, check=False)
                if status.returncode == 0 and json.loads(status.stdout)["workflows"]:
                    return
        except (requests.ConnectionError, ValueError):
            pass
        time.sleep(0.3)
    raise AssertionError("wfctl serve did not come up and sync in time")
