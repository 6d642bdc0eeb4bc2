"""End-to-end console tests in a real browser: Debian's chromium driven by Playwright, against `wfctl serve`.

    require_browser()                       # skips the test, with the reason, without chromium or playwright
    site = make_site(tmp_path, WORKFLOWS)   # a git repository of workflows, its directory loaded, synced
    site.wfctl("run", "acme/broken", "--wait")
    with serve(site) as url, browser() as chromium:
        page = new_page(chromium)         # its own context; a failed auto-wait gives up after 10 s
        page.goto(url + "/ui/sign-in")
        shoot(page, request, "signed-in")   # tests/artifacts/<test name>-signed-in.png

The browser is always /usr/bin/chromium (`apt-get install chromium`; `.ci/run` installs it when missing),
launched by the `playwright` package with ``--headless --no-sandbox``: never `playwright install`, which
downloads a browser build of its own. The server is a real `wfctl serve` process on 127.0.0.1 on a free
port, stopped with SIGTERM.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from click.testing import CliRunner, Result
from gitutil import commit_files, make_repo
from servers import HOST, free_port, until

from controller.cli import cli

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
ACCOUNT = "acme"
DIRECTORY = """\
users:
  - {id: u_alice, name: Alice, email: alice@acme.test, permissions: [admin]}
mailboxes:
  - {id: mb_support, name: Support, address: support@acme.test, kind: outbox}
channels:
  - {id: C1, name: oncall, webhook_url: "http://127.0.0.1:9/hook"}
"""


def missing_browser() -> str | None:
    """Why no browser test can run here, or None when chromium and playwright are both installed."""
    if not CHROMIUM.exists():
        return f"no {CHROMIUM}: install Debian's chromium (apt-get install -y chromium; .ci/run does it as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


def require_browser() -> None:
    """Skip the calling test, saying why, when chromium or playwright is missing."""
    reason = missing_browser()
    if reason:
        pytest.skip(reason)


@dataclass(frozen=True)
class Site:
    """A repository of workflows with its data directory and SQLite store, driven by `wfctl`."""

    repo: Path
    data_dir: Path
    db: str

    @property
    def options(self) -> list[str]:
        """wfctl's global options that point at this site (before the command)."""
        return ["--repo", str(self.repo), "--data-dir", str(self.data_dir), "--db", self.db]

    def wfctl(self, *args: str) -> Result:
        """Run `wfctl ARGS` in this process (click's CliRunner) against the site."""
        return CliRunner().invoke(cli, [*self.options, *args], catch_exceptions=False)

    def ok(self, *args: str) -> str:
        """Run `wfctl ARGS`, require exit 0, return its stdout."""
        result = self.wfctl(*args)
        assert result.exit_code == 0, f"wfctl {' '.join(args)}: exit {result.exit_code}\n{result.output}"
        return result.stdout

    def commit(self, files: Mapping[str, str | None], message: str) -> str:
        """Commit files (text, or None to delete) to the repository; `sync` deploys them."""
        from git import Repo

        return commit_files(Repo(self.repo), files, message)

    def token(self, permissions: str = "admin", user: str = "u_alice") -> str:
        """A new API token of the account (printed once by `wfctl token create`)."""
        printed = self.ok("token", "create", "--account", ACCOUNT, "--user", user, "--permissions", permissions)
        return printed.strip().splitlines()[-1].strip()


def make_site(tmp_path: Path, files: Mapping[str, str], directory: str = DIRECTORY) -> Site:
    """A real git repository under tmp_path with ``files`` committed, the account directory loaded, synced."""
    site = Site(repo=tmp_path / "repo", data_dir=tmp_path / "data", db=f"sqlite:///{tmp_path / 'wfctl.db'}")
    commit_files(make_repo(site.repo), files, "add workflows")
    loaded = tmp_path / f"{ACCOUNT}-directory.yaml"
    loaded.write_text(directory)
    site.ok("directory", "load", str(loaded), "--account", ACCOUNT)
    site.ok("sync")
    return site


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@contextmanager
def serve(site: Site, *, timeout: float = 30.0) -> Iterator[str]:
    """`wfctl serve` on 127.0.0.1 and a free port until the block ends (SIGTERM); yields its base URL."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    log_path = site.data_dir.parent / f"serve-{port}.log"
    command = [sys.executable, "-m", "controller", *site.options,
               "serve", "--host", HOST, "--port", str(port), "--interval", "3600", "--workers", "1"]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            until(lambda: _healthy(url) or server.poll() is not None, timeout=timeout)
        except AssertionError:
            raise AssertionError(f"wfctl serve did not answer /healthz in {timeout:g}s:\n{log_path.read_text()}") from None
        if server.poll() is not None:
            raise AssertionError(f"wfctl serve exited with {server.returncode}:\n{log_path.read_text()}")
        yield url
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(5)


@contextmanager
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, launched by Playwright (skips the test when either is missing)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def new_page(chromium: Browser, **context: Any) -> Page:
    """A page in a fresh context (its own cookies); a failed auto-wait gives up after 10 s, not 30."""
    page = chromium.new_context(**context).new_page()
    page.set_default_timeout(10_000)
    return page


def shoot(page: Page, request: pytest.FixtureRequest, step: str) -> Path:
    """Save a full-page screenshot as tests/artifacts/<test name>-<step>.png and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{request.node.name}-{step}")
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
