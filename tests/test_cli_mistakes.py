"""Every mistake a user makes on the command line is one line on stderr and exit 2 (3 for a guard), never a
traceback, and creates nothing it was not asked to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from gitutil import commit_files, make_repo

from controller.cli import cli

WORKFLOW = ("apiVersion: workflows/v1\nkind: Workflow\nmetadata: {name: a}\nspec:\n"
            "  trigger: {type: manual, entities: [ticket]}\n  actions:\n    - {id: a, type: set, vars: {x: 1}}\n")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    commit_files(make_repo(path), {"workflows.d/acme/a.yaml": WORKFLOW}, "add")
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "bad.yaml").write_text("features: {workflow_dry_run: true}\naccounts:\n  globex:\n"
                                       "    features: {workflow_dry_run: maybe}\n")
    (tmp_path / "syntax.yaml").write_text("features: [\n")
    (tmp_path / "unknown.yaml").write_text("featurez: {}\n")
    (tmp_path / "limits.yaml").write_text("limits:\n  rateLimit: {max: 0, per: 1h}\n")
    return path


MISTAKES: list[tuple[str, list[str], int, str]] = [
    ("db folder missing", ["--db", "sqlite:////proc/nope/x.db", "sync"], 2, "does not exist"),
    ("db folder not made", ["--db", "sqlite:///{tmp}/no/such/dir/x.db", "sync"], 2, "does not exist"),
    ("db is not a database", ["--db", "sqlite:////etc/passwd", "status"], 2, "file is not a database"),
    ("db is a folder", ["--db", "sqlite:///{tmp}", "status"], 2, "is a folder"),
    ("db scheme unknown", ["--db", "nosuch://x", "status"], 2, "cannot use database URL"),
    ("db unreachable", ["--db", "postgresql+psycopg://nobody@127.0.0.1:1/none", "status"], 2, "not reachable"),
    ("data dir is a file", ["--data-dir", "{tmp}/afile", "sync"], 2, "is a file, not a folder"),
    ("data dir in /proc", ["--data-dir", "/proc", "sync"], 2, "system folder"),
    ("data dir in /sys", ["--data-dir", "/sys/x", "sync"], 2, "system folder"),
    ("config missing", ["--config", "{tmp}/missing.yaml", "status"], 2, "no such file"),
    ("config bad value", ["--config", "{tmp}/bad.yaml", "dry-run", "{repo}/workflows.d/acme/a.yaml"], 2,
     "bad.yaml:4:16: accounts.globex.features.workflow_dry_run: not a boolean"),
    ("config syntax", ["--config", "{tmp}/syntax.yaml", "dry-run", "{repo}/workflows.d/acme/a.yaml"], 2,
     "syntax.yaml:2:1: YAML syntax error"),
    ("config unknown key", ["--config", "{tmp}/unknown.yaml", "dry-run", "{repo}/workflows.d/acme/a.yaml"], 2,
     "unknown.yaml:1:1: featurez: unknown key"),
    ("serve checks config first", ["--config", "{tmp}/limits.yaml", "serve"], 2,
     "limits.yaml:2:15: limits.rateLimit.max: must be at least 1"),
    ("serve host", ["serve", "--host", "256.1.1.1"], 2, "is not an address this machine can listen on"),
    ("execution id too big", ["executions", "show", "99999999999999999999999"], 2, "is not in the range"),
    ("execution id not a number", ["executions", "show", "abc"], 2, "is not a valid integer"),
    ("unknown option", ["--bogus"], 2, "No such option '--bogus'"),
    ("validate a non-workflow file", ["validate", "/etc/passwd"], 2, "is not a workflow file"),
    ("root outside the repository", ["--root", "..", "validate"], 2, "is outside the repository"),
    ("root not in the branch", ["--root", "nope", "sync"], 2, "there is no folder nope/"),
    ("repo missing", ["--repo", "/nonexistent", "sync"], 2, "/nonexistent: no such folder"),
    ("repo not a repository", ["--repo", "{tmp}", "sync"], 2, "is not inside a git repository"),
    ("unknown workflow", ["history", "acme/nope"], 2, "no workflow 'acme/nope'"),
    ("not ACCOUNT/NAME", ["history", "nope"], 2, "expected ACCOUNT/NAME"),
    ("unknown record type", ["records", "create", "gizmo", "--account", "acme", "--data", "{{}}"], 2,
     "'gizmo' is not a record type"),
    ("record data not JSON", ["records", "create", "ticket", "--account", "acme", "--data", "nope"], 2,
     "--data is not JSON"),
    ("directory file missing", ["directory", "load", "{tmp}/none.yaml", "--account", "acme"], 2, "does not exist"),
]


@pytest.mark.parametrize(("what", "args", "code", "text"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_mistake_is_one_line_and_its_exit_code(repo: Path, tmp_path: Path, what: str, args: list[str], code: int,
                                                  text: str) -> None:
    """The table: each mistake through the real CLI; one line on stderr, the exit code, no traceback."""
    filled = [a.format(tmp=tmp_path, repo=repo) for a in args]
    base = ["--repo", str(repo), "--data-dir", str(tmp_path / "data")]
    if "--db" not in filled:
        base += ["--db", f"sqlite:///{tmp_path / 'w.db'}"]
    result = CliRunner().invoke(cli, [*base, *filled])
    assert result.exit_code == code, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wfctl: error: "), result.stderr
    assert text in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "no").exists()  # nothing made outside the data directory


def test_a_symlink_loop_is_a_problem_of_that_file(repo: Path) -> None:
    """validate reports the looping link as that file's problem (exit 1), and checks the rest."""
    (repo / "workflows.d/acme/loop.yaml").symlink_to("loop.yaml")
    result = CliRunner().invoke(cli, ["--repo", str(repo), "validate"])
    assert result.exit_code == 1 and "loop.yaml" in result.stdout and "fix the link" in result.stdout
    assert "Traceback" not in result.output


def test_the_data_directory_is_ignored_by_git_and_a_tracked_one_refused(repo: Path) -> None:
    """A new data directory holds a `*` .gitignore; once git tracks files in it, every command refuses it."""
    run = ["--repo", str(repo), "--data-dir", str(repo / ".wfctl")]
    assert CliRunner().invoke(cli, [*run, "sync"]).exit_code == 0
    assert (repo / ".wfctl" / ".gitignore").read_text().splitlines()[-1] == "*"
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True,
                            check=True)
    assert ".wfctl" not in status.stdout
    subprocess.run(["git", "-C", str(repo), "add", "-f", ".wfctl/secret.key"], check=True)
    refused = CliRunner().invoke(cli, [*run, "sync"])
    assert refused.exit_code == 2 and "git tracks files in the data directory" in refused.stderr
    assert "git rm -r --cached" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_two_first_syncs_at_once_on_a_fresh_store_both_succeed(repo: Path, tmp_path: Path) -> None:
    """The first migration is serialised: a second process waits for it instead of failing."""
    base = [sys.executable, "-m", "controller", "--repo", str(repo), "--data-dir", str(tmp_path / "data"),
            "--db", f"sqlite:///{tmp_path / 'race.db'}"]
    runs = [subprocess.Popen([*base, "sync"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(3)]
    outcomes = [(p.wait(60), p.stderr.read() if p.stderr else "") for p in runs]
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    assert not any("locked" in err or "Traceback" in err for _, err in outcomes)


def test_the_installed_entry_point_prints_one_line_too(tmp_path: Path) -> None:
    """`python -m controller` (what `wfctl` runs): a usage mistake is one line, exit 2."""
    done = subprocess.run([sys.executable, "-m", "controller", "executions", "show", "x"], capture_output=True,
                          text=True, timeout=60, check=False, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "is not a valid integer" in done.stderr
