"""The `wfctl` command line: contracts of output, JSON keys and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from gitutil import commit_files, make_repo
from wfyaml import broken_duration, workflow

from controller.cli import cli

A = "workflows.d/acme/a.yaml"
B = "workflows.d/acme/b.yaml"
EXAMPLES = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    commit_files(make_repo(path), {A: workflow("a"), B: workflow("b")}, "Add a and b")
    return path


def wfctl(repo: Path, *args: str, db: str | None = None) -> Result:
    base = ["--repo", str(repo), "--data-dir", str(repo.parent / "data")]
    if db:
        base += ["--db", db]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def test_validate_exit_codes_and_formats(repo: Path) -> None:
    """validate exits 0 on valid files and 1 on invalid ones, in text, json and github formats."""
    assert wfctl(repo, "validate").exit_code == 0
    (repo / A).write_text(broken_duration("a"))
    text = wfctl(repo, "validate")
    assert text.exit_code == 1
    assert "workflows.d/acme/a.yaml:19:7: spec.actions[1].duration: '5 minutes' is not a duration" in text.stdout
    data = as_json(wfctl(repo, "validate", "--format", "json"))
    assert data["valid"] is False and data["files"] == 2
    assert data["problems"][0] | {"message": ""} == {
        "path": A, "line": 19, "column": 7, "field": "spec.actions[1].duration", "message": ""}
    github = wfctl(repo, "validate", "--format", "github").stdout.strip()
    assert github.startswith(f"::error file={A},line=19,col=7::spec.actions[1].duration: ")


def test_validate_given_paths_resolves_calls_in_the_account(repo: Path) -> None:
    """Validating one file still sees the other workflows of its account for call targets."""
    (repo / A).write_text(workflow("a", calls=["b"]))
    assert wfctl(repo, "validate", str(repo / A)).exit_code == 0
    (repo / A).write_text(workflow("a", calls=["missing"]))
    result = wfctl(repo, "validate", str(repo / A))
    assert result.exit_code == 1 and "acme/missing, which does not exist" in result.stdout


def test_validate_missing_path_is_a_usage_error(repo: Path) -> None:
    """A path that does not exist is one line on stderr and exit 2."""
    result = wfctl(repo, "validate", str(repo / "nope.yaml"))
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "no such file" in result.stderr


def test_plan_sync_status_history_audit(repo: Path) -> None:
    """plan shows pending work (exit 1), sync applies it (exit 0), then plan exits 0 and reads work."""
    plan = wfctl(repo, "plan", "--json")
    assert plan.exit_code == 1
    assert {w["id"]: w["action"] for w in as_json(plan)["workflows"]} == {"acme/a": "create", "acme/b": "create"}
    synced = wfctl(repo, "sync", "--json")
    assert synced.exit_code == 0, synced.output
    assert wfctl(repo, "plan").exit_code == 0
    status = as_json(wfctl(repo, "status", "--json"))
    assert set(status["source"]) >= {"last_applied_commit", "last_attempted_commit", "conditions"}
    first = status["workflows"][0]
    assert set(first) >= {"id", "version", "enabled", "sync", "message", "conditions"}
    assert (first["id"], first["version"], first["enabled"], first["sync"]) == ("acme/a", 1, True, "Synced")
    history = as_json(wfctl(repo, "history", "acme/a", "--json"))
    assert set(history[0]) >= {"version", "commit", "author", "author_email", "committed_at", "summary", "restored_from"}
    assert history[0]["committed_at"].endswith("+00:00")
    audit = as_json(wfctl(repo, "audit", "acme/a", "--json"))
    assert set(audit[0]) >= {"at", "actor", "action", "version", "commit", "changes"}
    assert audit[0]["action"] == "created"
    assert "acme/a" in wfctl(repo, "status").stdout


def test_sync_exits_1_when_something_stays_invalid(repo: Path) -> None:
    """sync applies what it can and exits 1 while a workflow stays Invalid."""
    wfctl(repo, "sync")
    commit_files(make_repo(repo), {A: broken_duration("a"), B: workflow("b", subject="x")}, "break a")
    result = wfctl(repo, "sync")
    assert result.exit_code == 1
    assert "Invalid" in result.stdout and "acme/a" in result.stdout
    plan = wfctl(repo, "plan", "--json")
    assert plan.exit_code == 1 and as_json(plan)["workflows"][0]["action"] == "invalid"


def test_errors_are_one_line_with_exit_2(repo: Path, tmp_path: Path) -> None:
    """Source and store problems print one line to stderr and exit 2."""
    not_a_repo = tmp_path / "empty"
    not_a_repo.mkdir()
    result = wfctl(not_a_repo, "sync")
    assert result.exit_code == 2 and result.stderr.startswith("wfctl: error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    unknown = wfctl(repo, "history", "acme/nope")
    assert unknown.exit_code == 2 and "no workflow 'acme/nope'" in unknown.stderr
    bad_db = wfctl(repo, "status", db="nosuchdb://x")
    assert bad_db.exit_code == 2 and len(bad_db.stderr.strip().splitlines()) == 1
    assert wfctl(repo, "history", "no-slash").exit_code == 2


def test_schema_prints_the_checked_in_schema(repo: Path) -> None:
    """wfctl schema prints exactly schemas/workflow.v1.schema.json."""
    result = wfctl(repo, "schema")
    assert result.stdout == (EXAMPLES / "schemas" / "workflow.v1.schema.json").read_text()


def test_db_upgrade(repo: Path, sqlite_url: str) -> None:
    """db upgrade creates the schema and is idempotent."""
    assert wfctl(repo, "db", "upgrade", db=sqlite_url).exit_code == 0
    assert wfctl(repo, "db", "upgrade", db=sqlite_url).exit_code == 0


def test_console_script_validates_the_bundled_examples() -> None:
    """The installed `wfctl` validates the example repository of this project."""
    result = subprocess.run([sys.executable, "-m", "controller", "validate"], check=False, cwd=EXAMPLES,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout
