"""`wfctl restore --controller` and `wfctl check --controller` ask a live controller over its API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from enginekit import Kit, kit
from gitutil import git

from controller.cli import cli
from controller.security import tokens
from controller.settings import Settings
from webhooks import create_app, start_server

A = "workflows.d/acme/a.yaml"


def wf(value: str) -> str:
    return ("apiVersion: workflows/v1\nkind: Workflow\nmetadata: {name: a}\nspec:\n"
            "  trigger: {type: manual, entities: [ticket]}\n  actions:\n"
            f"    - {{id: nap, type: wait, duration: 1h}}\n    - {{id: mark, type: set, vars: {{v: {value}}}}}\n")


@pytest.fixture
def live(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[Kit, str, str]]:
    with kit(tmp_path, sqlite_url) as k:
        k.deploy({A: wf("one")}, "v1")
        k.deploy({A: wf("two")}, "v2")
        with k.store.tx() as conn:
            bearer = tokens.create(conn, "acme", "u_ops", ["workflow.read"], k.clock.now(), name="ci").bearer
        settings = Settings(repo=str(k.path), data_dir=k.data_dir, database_url=sqlite_url)
        server = start_server(create_app(settings, k.store, k.engine, environ={"WFC_SECRET_KEY": ""}), port=0)
        try:
            yield k, server.url, bearer
        finally:
            server.stop()


def test_restore_refuses_when_the_live_controller_has_work_in_flight(live: tuple[Kit, str, str]) -> None:
    """restore --controller (no --db) exits 3 naming the controller's execution, and commits once idle."""
    k, url, bearer = live
    busy = k.run("acme/a")
    args = ["--repo", str(k.path), "--data-dir", str(k.data_dir), "restore", "acme/a", "--to", "1",
            "--controller", url, "--token", bearer]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 3 and str(busy) in refused.stderr, refused.output
    bad_token = CliRunner().invoke(cli, [*args[:-1], "wfc_not-a-token"])
    assert bad_token.exit_code == 2 and "401" in bad_token.stderr
    k.engine.cancel(busy)
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert "Restores: acme/a@1" in git(k.path, "log", "-1", "--format=%B")
    assert (k.path / A).read_text() == wf("one")  # version 1's file, from the commit the controller named


def test_check_warns_about_a_restore_the_controller_would_hold_back(live: tuple[Kit, str, str]) -> None:
    """check --controller reports a restore of a busy workflow as a warning naming the executions."""
    k, url, bearer = live
    busy = k.run("acme/a")
    git(k.path, "revert", "--no-edit", "HEAD")
    result = CliRunner().invoke(cli, ["--repo", str(k.path), "check", "--base", "HEAD~1", "--controller", url,
                                      "--token", bearer])
    assert "restored" in result.stdout
    assert f"would hold this restore back now: 1 execution(s) in flight ({busy})" in result.stdout
