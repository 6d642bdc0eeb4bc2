"""Hostile definition files meet the parser limits in `validate`, `check`, `sync` and serve's reconciler alike.

Each limit (size, nesting, alias expansion, actions, binary and non-UTF-8 bytes) is one located problem
naming the limit; the process never crashes (a 50,000-deep list used to kill `wfctl validate` with
SIGSEGV, exit 139), the other files still apply, and a workflow whose new file breaks a limit keeps its
last good version. Paths: a symlink out of the repository is reported and never read, and `wfctl
import` refuses an account or a workflow name that would lead outside the account's folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from gitutil import Symlink, commit_files, git, make_repo

from controller.cli import cli
from controller.errors import DefinitionError
from controller.model import yamlfile
from controller.model.directory import parse_directory
from controller.reconcile.loader import MAX_ACTIONS, WorkflowPath, load
from controller.settings import Settings
from controller.store import open_store, views

HEAD = """apiVersion: workflows/v1
kind: Workflow
metadata: {{name: {name}}}
spec:
  trigger: {{type: manual, entities: [ticket]}}
  actions:
"""
STEP = "    - {{id: s{n}, type: set, vars: {{n: {n}}}}}\n"


def workflow(name: str, steps: int = 1, *, extra: str = "") -> str:
    return HEAD.format(name=name) + "".join(STEP.format(n=n) for n in range(steps)) + extra


def alias_bomb(name: str) -> str:
    """A 9-level, 9-wide "billion laughs" in a step's ``vars``, where any data is allowed: 9^9 values once expanded."""
    levels = ["        l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"]
    levels += [f"        l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)]
    return HEAD.format(name=name) + "    - id: boom\n      type: set\n      vars:\n" + "".join(levels)


# name -> (content, what the one problem of that file says, its line)
HOSTILE: dict[str, tuple[bytes, str, int]] = {
    "deep-list": (b"- " * 50_000 + b"x", "nests deeper than 100 levels (the limit)", 1),
    "deep-keys": (b"? " * 50_000 + b"x", "nests deeper than 100 levels (the limit)", 1),
    "deep-mixed": (workflow("deep-mixed").encode() + b"    - " + b"- ? " * 25 + b"[" * 60 + b"x" + b"]" * 60,
                   "nests deeper than 100 levels", 8),
    "deep-seq-keys": (b"- ? " * 30_000 + b"x", "nests deeper than 100 levels", 1),
    "deep-flow": (workflow("deep-flow", extra="    - " + "{a: " * 20_000).encode(), "nests deeper than 100", 8),
    "alias-bomb": (alias_bomb("alias-bomb").encode(), "aliases expand this file by more than 10000 values", 14),
    "self-alias": (workflow("self-alias", extra="    - &me [*me]\n").encode(), "inside its own anchor &me", 8),
    "too-large": (workflow("too-large").encode() + b"# padding\n" * 110_000, "over the limit of 1048576 bytes", 1),
    "too-many": (workflow("too-many", MAX_ACTIONS + 1).encode(), f"more than {MAX_ACTIONS} actions (the limit", 6),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "the file is binary", 1),
    "nul": (b"apiVersion: workflows/v1\nkind: \x00\x00\x00", "the file is binary, not text (a NUL byte)", 2),
    "latin-1": (workflow("latin-1").replace("set, vars", "set, descr: caf\xe9, vars").encode("latin-1"),
                "not UTF-8 text (invalid continuation byte", 7),
}
PATH = "workflows.d/acme/{}.yaml"


def _files(**more: str | bytes | Symlink | None) -> dict[str, Any]:
    return {PATH.format(name): content for name, (content, _, _) in HOSTILE.items()} | {
        PATH.format(name): content for name, content in more.items()}


def _commit(repo: Any, files: dict[str, Any], message: str) -> str:
    """commit_files() for raw bytes too (binary and Latin-1 files are not text)."""
    top = Path(str(repo.working_tree_dir))
    raw = {path: content for path, content in files.items() if isinstance(content, bytes)}
    for path, content in raw.items():
        (top / path).unlink(missing_ok=True)  # never write through a symlink there
        (top / path).parent.mkdir(parents=True, exist_ok=True)
        (top / path).write_bytes(content)
    git(top, "add", "--", *raw)
    return commit_files(repo, {path: content for path, content in files.items() if path not in raw}, message)


def _wfctl(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = [sys.executable, "-m", "controller", "--repo", str(tmp_path / "repo"), "--data-dir", str(tmp_path / "data")]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=120, check=False)


def _one_line_per_file(output: str) -> None:
    """Every hostile file is exactly one line of the output, at its place, naming its limit."""
    for name, (_, message, line) in HOSTILE.items():
        found = [row for row in output.splitlines() if PATH.format(name) in row]
        assert len(found) == 1, (name, found)
        assert found[0].lstrip().startswith(f"{PATH.format(name)}:{line}:") and message in found[0], found


@pytest.fixture
def repo(tmp_path: Path) -> Any:
    return make_repo(tmp_path / "repo")


def test_validate_reports_each_limit_on_one_line_and_exits_1_not_139(repo: Any, tmp_path: Path) -> None:
    """`wfctl validate` of a tree with every hostile file: exit 1 (a 50,000-deep list used to be SIGSEGV, 139)."""
    _commit(repo, _files(fine=workflow("fine")), "hostile files")
    started = time.monotonic()
    done = _wfctl(tmp_path, "validate")
    assert done.returncode == 1, done.stderr
    _one_line_per_file(done.stdout)
    assert "fine.yaml" not in done.stdout and "Traceback" not in done.stderr
    assert done.stdout.strip().endswith(f"{len(HOSTILE) + 1} file(s) checked, {len(HOSTILE)} invalid")
    assert time.monotonic() - started < 30


def test_check_reports_each_limit_and_dry_runs_the_rest(repo: Any, tmp_path: Path) -> None:
    """`wfctl check`: the same one line per hostile file, exit 1, and the valid workflow is still dry-run."""
    _commit(repo, _files(fine=workflow("fine")), "hostile files")
    done = _wfctl(tmp_path, "check")
    assert done.returncode == 1, done.stderr
    _one_line_per_file(done.stdout)
    assert "ok   acme/fine" in done.stdout and "Traceback" not in done.stderr


def _status(tmp_path: Path) -> dict[str, dict[str, Any]]:
    store = open_store(f"sqlite:///{tmp_path / 'data' / 'wfctl.db'}")
    try:
        with store.read() as conn:
            return {row["id"]: row for row in views.status(conn)["workflows"]}
    finally:
        store.close()


def test_sync_reports_each_limit_applies_the_rest_and_keeps_the_last_good_version(repo: Any, tmp_path: Path) -> None:
    """`wfctl sync` on a real repo: each hostile file is Invalid with its limit, an edit beside them applies, and a
    workflow replaced by a 50,000-deep list keeps its version 1."""
    commit_files(repo, {PATH.format("victim"): workflow("victim"), PATH.format("fine"): workflow("fine")}, "v1")
    assert _wfctl(tmp_path, "sync").returncode == 0
    _commit(repo, _files(fine=workflow("fine", 2), victim=HOSTILE["deep-list"][0]), "hostile files")
    done = _wfctl(tmp_path, "sync")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    rows = _status(tmp_path)
    for name, (_, message, line) in HOSTILE.items():
        row = rows[f"acme/{name}"]
        assert row["sync"] == "Invalid" and row["version"] is None, row
        assert row["message"].startswith(f"{PATH.format(name)}:{line}:") and message in row["message"]
    assert rows["acme/fine"]["version"] == 2 and rows["acme/fine"]["sync"] == "Synced"
    victim = rows["acme/victim"]
    assert victim["version"] == 1 and victim["sync"] == "Invalid" and "nests deeper than 100" in victim["message"]


def test_serve_reconciler_reports_each_limit_and_applies_the_rest(repo: Any, tmp_path: Path) -> None:
    """The reconciler serve runs (in-process here): the same problems, and the valid file applies."""
    _commit(repo, _files(fine=workflow("fine")), "hostile files")
    settings = Settings(repo=str(tmp_path / "repo"), data_dir=tmp_path / "data")
    with settings.reconciler() as reconciler:
        reconciler.sync()
    rows = _status(tmp_path)
    assert rows["acme/fine"]["version"] == 1
    for name, (_, message, _) in HOSTILE.items():
        assert rows[f"acme/{name}"]["sync"] == "Invalid" and message in rows[f"acme/{name}"]["message"]


def test_an_alias_bomb_is_refused_within_a_second_without_memory_growth() -> None:
    """Loading the 9x9 alias bomb takes well under a second and allocates under 5 MB (expanded, it is 387M values)."""
    where = WorkflowPath(PATH.format("alias-bomb"), "acme", "alias-bomb")
    data = alias_bomb("alias-bomb").encode()
    tracemalloc.start()
    started = time.perf_counter()
    loaded = load(where, data)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 1.0 and peak < 5_000_000, (elapsed, peak)
    assert [p.message for p in loaded.problems] == [(
        "YAML aliases expand this file by more than 10000 values (the limit, against 'billion laughs' files); "
        "write the values out, or alias smaller ones")]


def test_normal_files_pass_the_limits_exactly() -> None:
    """At the limits, files still load: 100 levels of nesting, 500 actions, aliases adding 10,000 values."""
    line = "    - {id: deep, type: set, vars: {v: " + "[" * 95 + "]" * 95 + "}}\n"  # the map, spec, actions, the
    deep = workflow("deep", extra=line)  # action and vars are 5 levels: 100 with the 95 lists
    assert load(WorkflowPath(PATH.format("deep"), "acme", "deep"), deep.encode()).ok
    one_more = deep.replace("[" * 95, "[" * 96).replace("]" * 95, "]" * 96)
    [problem] = load(WorkflowPath(PATH.format("deep"), "acme", "deep"), one_more.encode()).problems
    assert "nests deeper than 100 levels" in problem.message
    assert (problem.line, problem.column) == (8, line.index("[") + 96)  # at the 101st level
    assert load(WorkflowPath(PATH.format("many"), "acme", "many"), workflow("many", MAX_ACTIONS).encode()).ok
    reuse = workflow("reuse", extra="    - {id: a, type: set, vars: {base: &b [" + ", ".join(["x"] * 99) + "]}}\n"
                     + "".join(f"    - {{id: r{n}, type: set, vars: {{v: *b}}}}\n" for n in range(100)))
    assert load(WorkflowPath(PATH.format("reuse"), "acme", "reuse"), reuse.encode()).ok


def test_the_shallow_proof_holds_for_line_breaks_libyaml_knows_and_python_does_not() -> None:
    """A lone \\r, NEL, LS or PS breaks a line for libyaml: a deep list after one is measured, never let through."""
    for brk in ("\r", "\x85", "\u2028", "\u2029", "\ufeff"):
        text = "a: 1" + brk + "- " * 50_000 + "x" if brk != "\ufeff" else brk + "- " * 50_000 + "x"
        problem = yamlfile.shape_problem(text, "f.yaml")
        assert problem is None or "nests deeper" in problem.message
        with pytest.raises(DefinitionError):  # a syntax error or the limit, never a crash
            yamlfile.parse(text, "f.yaml")


def test_directory_and_tests_files_meet_the_same_limits(tmp_path: Path) -> None:
    """The directory file and a workflow's tests file go through the same limits (one located problem each)."""
    with pytest.raises(DefinitionError, match=r"acme\.yaml:1:201: the file nests deeper than 100 levels"):
        parse_directory("- " * 50_000 + "x", "acme.yaml")
    with pytest.raises(DefinitionError, match=r"acme\.json:1:101: the file nests deeper than 100 levels"):
        parse_directory("[" * 50_000 + "]" * 50_000, "acme.json")  # JSON, YAML's flow style, alike
    bomb = "users:\n  - &u {id: u_a, name: A, email: a@example.com}\n" + "".join(
        f"x{i}: &x{i} [{', '.join([f'*x{i - 1}' if i else '*u'] * 9)}]\n" for i in range(8))
    with pytest.raises(DefinitionError, match="aliases expand this file"):
        parse_directory(bomb, "acme.yaml")
    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {PATH.format("fine"): workflow("fine"),
                                   "workflows.d/acme/fine.tests.yaml": "cases:\n  - name: x\n    entity: "
                                                                       + "[" * 60_000}, "deep tests")
    done = _wfctl(tmp_path, "validate")
    assert done.returncode == 1 and done.stdout.startswith(
        "workflows.d/acme/fine.tests.yaml:3:110: the file nests deeper than 100 levels"), done.stdout


def test_check_against_a_base_reports_binary_and_linked_out_tests_files(repo: Any, tmp_path: Path) -> None:
    """`wfctl check --base main` with a binary tests file and one linked out of the repository: one located line
    each, exit 1, no internal error (the plan hashed the tests file as text and stopped on the binary one)."""
    commit_files(repo, {PATH.format("one"): workflow("one"), PATH.format("two"): workflow("two")}, "base")
    (tmp_path / "secret").write_text("TOPSECRET-7f3a: 1\n")
    (tmp_path / "repo" / "workflows.d/acme/one.tests.yaml").write_bytes(b"\x89PNG\x00\xff")
    (tmp_path / "repo" / "workflows.d/acme/two.tests.yaml").symlink_to("../../../secret")
    done = _wfctl(tmp_path, "check", "--base", "main")
    assert done.returncode == 1 and "internal error" not in done.stderr, done.stderr
    assert "workflows.d/acme/one.tests.yaml:1:1: the file is binary" in done.stdout
    assert "symlink points outside the repository" in done.stdout and "TOPSECRET" not in done.stdout


# -- paths -----------------------------------------------------------------------------------------


def test_symlinks_out_of_the_repository_are_reported_and_never_read(repo: Any, tmp_path: Path) -> None:
    """Symlinks to /etc/passwd and to ../../secret (a workflow and a tests file): each one problem in validate,
    check and sync; the secret's content appears nowhere."""
    secret = tmp_path / "secret"
    secret.write_text("TOPSECRET-7f3a: 1\n")
    tests = "workflows.d/acme/fine.tests.yaml"
    links: dict[str, str | Symlink | None] = {
        PATH.format("passwd"): Symlink("/etc/passwd"), PATH.format("secret"): Symlink("../../../secret"),
        tests: Symlink("../../../secret"), PATH.format("fine"): workflow("fine")}
    commit_files(repo, links, "links out")
    for command in ("validate", "check", "sync"):
        done = _wfctl(tmp_path, command)
        assert done.returncode == 1, (command, done.stderr)
        assert "TOPSECRET" not in done.stdout + done.stderr and "root:" not in done.stdout + done.stderr
        if command != "sync":
            for path in (PATH.format("passwd"), PATH.format("secret"), tests):
                found = [row for row in done.stdout.splitlines() if path in row]
                assert len(found) == 1 and "symlink points outside the repository" in found[0], (command, found)
                assert found[0].count(path) == 1, found  # the path once, not again inside the message
    rows = _status(tmp_path)
    assert rows["acme/fine"]["version"] == 1
    for name in ("passwd", "secret"):
        assert "symlink points outside the repository" in rows[f"acme/{name}"]["message"]


def _import(tmp_path: Path, document: dict[str, Any], *args: str) -> Any:
    file = tmp_path / "export.json"
    file.write_text(json.dumps(document))
    base = ["--repo", str(tmp_path / "repo"), "--data-dir", str(tmp_path / "data")]
    return CliRunner().invoke(cli, [*base, "import", str(file), *args])


def _document(name: str) -> dict[str, Any]:
    definition = {"apiVersion": "workflows/v1", "kind": "Workflow", "metadata": {"name": name},
                  "spec": {"trigger": {"type": "manual", "entities": ["ticket"]},
                           "actions": [{"id": "a", "type": "set", "vars": {"x": 1}}]}}
    return {"format": "wfctl.export/v1", "workflows": [definition], "bindings": []}


def _tree(top: Path) -> set[Path]:
    return {p for p in top.rglob("*") if ".git" not in p.parts and "data" not in p.parts}


def test_import_refuses_names_that_lead_outside_the_account_folder(repo: Any, tmp_path: Path) -> None:
    """`wfctl import` with account ``../x``, a workflow named ``a/../../b`` or ``--rename w=../../c``: exit non-zero,
    one line naming the bad name, and no file written anywhere."""
    commit_files(repo, {PATH.format("fine"): workflow("fine")}, "one")
    (tmp_path / "acme-directory.yaml").write_text("users:\n  - {id: u_a, name: A, email: a@example.com}\n")
    base = ["--repo", str(tmp_path / "repo"), "--data-dir", str(tmp_path / "data")]
    loaded = CliRunner().invoke(cli, [*base, "directory", "load", str(tmp_path / "acme-directory.yaml"), "--account",
                                      "acme"])
    assert loaded.exit_code == 0, loaded.output
    before = _tree(tmp_path)
    cases = [(_document("w"), ("--account", "../x"), "'../x' is not an account name"),
             (_document("w"), ("--account", "acme\n"), "is not an account name"),
             (_document("a/../../b"), ("--account", "acme"), "'a/../../b' is not a workflow name"),
             (_document("w"), ("--account", "acme", "--rename", "w=../../c"), "'../../c' is not a workflow name")]
    for document, args, message in cases:
        done = _import(tmp_path, document, *args)
        assert done.exit_code != 0 and message in done.output, (args, done.output)
        assert "Traceback" not in done.output
    assert _tree(tmp_path) - before == {tmp_path / "export.json"}  # nothing written, here or above
    done = _import(tmp_path, _document("w"), "--account", "acme")
    assert done.exit_code == 0, done.output
    assert (tmp_path / "repo" / PATH.format("w")).is_file()


def test_a_key_merged_in_by_a_merge_key_is_a_located_problem_not_a_crash() -> None:
    """``<<`` merges a key the model refuses: the problem is placed at the map it was merged into."""
    from controller.reconcile.loader import WorkflowPath, load

    text = ("apiVersion: workflows/v1\nkind: Workflow\nmetadata: {name: x}\nspec:\n"
            "  trigger: {type: manual, entities: [ticket]}\n"
            "  actions: [ {<<: {a: 1}, id: x, type: wait, duration: 1m} ]\n")
    loaded = load(WorkflowPath("workflows.d/acme/x.yaml", "acme", "x"), text.encode())
    assert not loaded.ok
    [problem] = loaded.problems
    assert (problem.line, problem.column) == (6, 14) and problem.field == "spec.actions[0].a", problem
