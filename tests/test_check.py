"""`wfctl check`: validate, plan against --base, dry-run what changed, in every output format; CI files.

The repositories are real git repositories in tmp_path with a pull-request shape: ``main`` holds
the reviewed state, a ``feature`` branch is checked out with the change.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner, Result
from gitutil import commit_files, git, make_repo
from ruamel.yaml import YAML
from servers import HttpServer, Response, http_server
from wfyaml import broken_duration, workflow

from controller.check.cases import parse_tests
from controller.check.report import MARKER
from controller.cli import cli
from controller.errors import DefinitionError

ROOT = Path(__file__).resolve().parents[1]
WF = "workflows.d/acme/{}.yaml"
TESTS = "workflows.d/acme/{}.tests.yaml"


def cases_for(subject: str, name: str = "says hello") -> str:
    """A tests file whose one case expects mail-lead (see wfyaml.workflow) to have ``subject``."""
    return (f"cases:\n  - name: {name}\n    expect:\n      status: succeeded\n      ran: [mail-lead]\n"
            f"      effects:\n        mail-lead: {{subject: {subject}, to: lead@acme.test}}\n")


def wfctl(repo: Path, *args: str, config: Path | None = None) -> Result:
    base = ["--repo", str(repo), "--data-dir", str(repo.parent / "data")]
    if config is not None:
        base += ["--config", str(config)]
    return CliRunner().invoke(cli, [*base, "check", *args], catch_exceptions=False)


@pytest.fixture
def pr(tmp_path: Path) -> Path:
    """main: clean, changed (both with passing tests) and gone; feature: changed breaks its test, broken added, gone removed."""
    path = tmp_path / "repo"
    repo = make_repo(path)
    commit_files(repo, {WF.format("clean"): workflow("clean"), TESTS.format("clean"): cases_for("Hello"),
                        WF.format("changed"): workflow("changed"), TESTS.format("changed"): cases_for("Hello"),
                        WF.format("gone"): workflow("gone")}, "Reviewed workflows")
    git(path, "checkout", "-q", "-b", "feature")
    commit_files(repo, {WF.format("changed"): workflow("changed", subject="Goodbye"),
                        WF.format("broken"): broken_duration("broken"), WF.format("gone"): None}, "A risky change")
    return path


def fix(path: Path) -> None:
    """The follow-up commit of the pull request: the broken file repaired, the test updated."""
    commit_files(make_repo(path), {WF.format("broken"): workflow("broken"),
                                   TESTS.format("changed"): cases_for("Goodbye")}, "Fix review findings")


# -- a pull request with a broken file and a failing test, then fixed --------------------------------


def test_text_report_names_problems_changes_and_failed_cases(pr: Path) -> None:
    """Text: path:line:col of the broken file, the plan against main, the failing case and why; exit 1."""
    result = wfctl(pr, "--base", "main")
    assert result.exit_code == 1
    out = result.stdout
    assert "validate: 3 file(s), 1 problem(s)" in out
    assert "  workflows.d/acme/broken.yaml:19:7: spec.actions[1].duration: '5 minutes' is not a duration" in out
    assert "plan against main: 3 change(s)" in out
    assert re.search(r"^  added +acme/broken$", out, re.MULTILINE) and re.search(r"^  removed +acme/gone$", out, re.MULTILINE)
    assert re.search(r"^  changed +acme/changed$", out, re.MULTILINE)
    assert '      spec.actions[mail-lead].subject: "Hello" -> "Goodbye"' in out
    assert "dry run: 0/1 case(s) passed" in out  # clean did not change: not dry-run
    assert "  FAIL acme/changed :: says hello" in out
    assert "       effects.mail-lead.subject: expected 'Hello', got 'Goodbye'" in out
    assert "acme/clean" not in out
    assert out.endswith("check FAILED\n")


def test_json_report(pr: Path) -> None:
    """JSON: ok, problems with line and column, each change with its kind, each case with its failures and trace."""
    result = wfctl(pr, "--base", "main", "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert (data["ok"], data["files"], data["base"]) == (False, 3, "main")
    [problem] = data["problems"]
    assert (problem["path"], problem["line"], problem["column"], problem["field"]) == (
        WF.format("broken"), 19, 7, "spec.actions[1].duration")
    assert {c["id"]: c["change"] for c in data["changes"]} == {
        "acme/broken": "added", "acme/changed": "changed", "acme/gone": "removed"}
    [case] = data["cases"]
    assert (case["workflow"], case["case"], case["ok"], case["synthetic"]) == ("acme/changed", "says hello", False, False)
    assert (case["path"], case["line"]) == (TESTS.format("changed"), 2)
    assert case["failures"] == ["effects.mail-lead.subject: expected 'Hello', got 'Goodbye'"]
    [intent] = case["dry_run"]["intents"]
    assert intent["description"].startswith("send e-mail from mailbox:mb_support to lead@acme.test")


def test_github_annotations_carry_file_and_line(pr: Path) -> None:
    """GitHub: one ::error per problem and per failed case, each with file= and line=; a summary line last."""
    result = wfctl(pr, "--base", "main", "--format", "github")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"::error file={WF.format('broken')},line=19,col=7::spec.actions[1].duration: ")
    assert lines[1] == (f"::error file={TESTS.format('changed')},line=2,col=1::acme/changed case 'says hello': "
                        "effects.mail-lead.subject: expected 'Hello', got 'Goodbye'")
    assert all(re.match(r"::error file=[^,]+,line=\d+,col=\d+::", line) for line in lines[:-1])
    assert lines[-1] == "check failed: 1 problem(s), 1 failed case(s) of 1"


def test_junit_file_parses_and_counts_failures(pr: Path, tmp_path: Path) -> None:
    """JUnit written with --output parses with xml.etree: a validate and a dry-run suite with their failures."""
    report = tmp_path / "wfctl-check.xml"
    result = wfctl(pr, "--base", "main", "--format", "junit", "--output", str(report))
    assert result.exit_code == 1
    assert result.stdout == f"check FAILED; report written to {report}\n"
    suites = ET.parse(report).getroot()
    assert suites.tag == "testsuites"
    validate, dry = suites.findall("testsuite")
    assert (validate.get("name"), validate.get("failures")) == ("validate", "1")
    [broken] = validate.findall("testcase")
    assert broken.get("name") == WF.format("broken")
    assert broken.find("failure").get("message").startswith(f"{WF.format('broken')}:19:7: ")  # type: ignore[union-attr]
    assert (dry.get("name"), dry.get("tests"), dry.get("failures")) == ("dry-run", "1", "1")
    [case] = dry.findall("testcase")
    assert (case.get("classname"), case.get("name"), case.get("file")) == (
        "acme/changed", "says hello", TESTS.format("changed"))
    assert "expected 'Hello', got 'Goodbye'" in case.find("failure").text  # type: ignore[union-attr,operator]
    assert "mail-lead: succeeded - send e-mail from mailbox:mb_support" in case.find("system-out").text  # type: ignore[union-attr,operator]


def test_the_fixed_pull_request_passes_in_every_format(pr: Path, tmp_path: Path) -> None:
    """After the fix every format says passed and exits 0; the clean, unchanged workflow is still not dry-run."""
    fix(pr)
    text = wfctl(pr, "--base", "main")
    assert text.exit_code == 0 and text.stdout.endswith("check passed\n")
    assert "dry run: 2/2 case(s) passed" in text.stdout  # changed, and broken's synthetic case
    data = json.loads(wfctl(pr, "--base", "main", "--format", "json").stdout)
    assert data["ok"] is True and data["problems"] == []
    assert sorted((c["workflow"], c["synthetic"]) for c in data["cases"]) == [
        ("acme/broken", True), ("acme/changed", False)]
    github = wfctl(pr, "--base", "main", "--format", "github")
    assert (github.exit_code, github.stdout) == (0, "check passed: 0 problem(s), 0 failed case(s) of 2\n")
    report = tmp_path / "ok.xml"
    assert wfctl(pr, "--base", "main", "--format", "junit", "--output", str(report)).exit_code == 0
    suites = ET.parse(report).getroot()
    assert [(s.get("name"), s.get("failures")) for s in suites.findall("testsuite")] == [
        ("validate", "0"), ("dry-run", "0")]


def test_without_base_every_workflow_is_dry_run(pr: Path) -> None:
    """No --base: no plan; every valid workflow runs its cases, or a synthetic one when it has no tests."""
    fix(pr)
    data = json.loads(wfctl(pr, "--format", "json").stdout)
    assert data["changes"] == [] and data["base"] is None
    assert sorted((c["workflow"], c["synthetic"]) for c in data["cases"]) == [
        ("acme/broken", True), ("acme/changed", False), ("acme/clean", False)]
    synthetic = next(c for c in data["cases"] if c["synthetic"])
    assert synthetic["path"] == WF.format("broken")


def test_a_changed_tests_file_alone_is_dry_run(pr: Path) -> None:
    """Changing only clean's tests file lists clean as a 'tests' change and runs its cases."""
    fix(pr)
    commit_files(make_repo(pr), {TESTS.format("clean"): cases_for("Hello", "still says hello")}, "Rename a case")
    data = json.loads(wfctl(pr, "--base", "main", "--format", "json").stdout)
    assert {c["id"]: c["change"] for c in data["changes"]}["acme/clean"] == "tests"
    assert ("acme/clean", "still says hello") in {(c["workflow"], c["case"]) for c in data["cases"]}


def test_the_working_tree_is_checked_not_only_commits(pr: Path) -> None:
    """An uncommitted edit that breaks clean's test is caught: check reads the checkout as it is."""
    fix(pr)
    (pr / WF.format("clean")).write_text(workflow("clean", subject="Oops"))
    result = wfctl(pr, "--base", "main")
    assert result.exit_code == 1
    assert "FAIL acme/clean :: says hello" in result.stdout


# -- test files and their expectations ---------------------------------------------------------------


def test_a_broken_tests_file_is_a_located_problem(pr: Path) -> None:
    """A tests file with an unknown key fails check with path:line:col, like a broken workflow file."""
    fix(pr)
    (pr / TESTS.format("changed")).write_text("cases:\n  - name: x\n    expect:\n      stauts: succeeded\n")
    result = wfctl(pr, "--base", "main", "--format", "github")
    assert result.exit_code == 1
    assert result.stdout.startswith(f"::error file={TESTS.format('changed')},line=4,col=7::")
    assert "stauts" in result.stdout.splitlines()[0]


def test_expectations_fail_when_the_run_differs(tmp_path: Path) -> None:
    """Status, ran, skipped, branches, effects, output and error each fail a case when the dry run differs."""
    path = tmp_path / "repo"
    actions = ("    - {id: pick, type: if, condition: \"{{ record.vip | default(false) }}\", "
               "then: [{id: vip, type: set, vars: {level: gold}}], else: [{id: normal, type: set, vars: {level: std}}]}\n")
    tests = """\
cases:
  - name: everything as expected
    entity: {vip: true}
    expect: {status: succeeded, ran: [mail-lead, vip], skipped: [normal], branches: {pick: then},
             effects: {mail-lead: {to: {matches: "@acme\\\\.test$"}, cc: []}}, output: {level: gold}}
  - name: everything wrong
    entity: {vip: false}
    expect: {status: failed, ran: [vip], skipped: [normal], branches: {pick: then},
             effects: {mail-lead: {subject: Bye}}, output: {level: gold}, error: {matches: boom}}
  - name: a typo in an action id
    expect: {skipped: [mail-laed]}
  - name: expected not to start
    expect: {status: not_started}
"""
    commit_files(make_repo(path), {WF.format("vip"): workflow("vip", extra=actions), TESTS.format("vip"): tests}, "vip")
    data = json.loads(wfctl(path, "--format", "json").stdout)
    by_name = {c["case"]: c for c in data["cases"]}
    assert by_name["everything as expected"]["failures"] == []
    assert by_name["everything wrong"]["failures"] == [
        "status: expected 'failed', got 'succeeded'", "ran.vip: expected 'ran', got 'did not run'",
        "skipped.normal: expected 'skipped', got 'ran'", "branches.pick: expected 'then', got 'else'",
        "effects.mail-lead.subject: expected 'Bye', got 'Hello'", "output.level: expected 'gold', got 'std'",
        "error: expected {'matches': 'boom'}, got None"]
    assert by_name["a typo in an action id"]["failures"] == [
        "skipped.mail-laed: expected 'an action of the workflow or of one it calls', got 'no such action'"]
    assert by_name["expected not to start"]["failures"] == [
        "status: expected 'not_started', got 'succeeded'"]


def test_an_action_id_means_the_workflows_own_action_before_a_called_ones(tmp_path: Path) -> None:
    """Parent and called child both have ``pick`` and ``mail-lead``: branches and effects judge the parent's."""
    path = tmp_path / "repo"
    pick = ("    - {{id: pick, type: if, condition: \"{{{{ {0} }}}}\", then: [{{id: yes-{1}, type: set, vars: {{a: 1}}}}], "
            "else: [{{id: no-{1}, type: set, vars: {{a: 2}}}}]}}\n")
    tests = ("cases:\n  - name: own first\n    expect:\n      ran: [yes-parent, no-child]\n"
             "      branches: {pick: then}\n      effects: {mail-lead: {subject: From parent}}\n")
    commit_files(make_repo(path), {
        WF.format("parent"): workflow("parent", subject="From parent", calls=["child"], extra=pick.format("true", "parent")),
        WF.format("child"): workflow("child", subject="From child", extra=pick.format("false", "child")),
        TESTS.format("parent"): tests}, "two picks")
    data = json.loads(wfctl(path, "--format", "json").stdout)
    [case] = [c for c in data["cases"] if c["workflow"] == "acme/parent"]
    assert case["failures"] == []
    assert [(i["workflow"], i["subject"]) for i in case["dry_run"]["intents"]] == [
        ("acme/parent", "From parent"), ("acme/child", "From child")]


def test_parse_tests_locates_problems() -> None:
    """parse_tests rejects duplicate case names and bad YAML with path:line:col."""
    with pytest.raises(DefinitionError) as twice:
        parse_tests("cases:\n  - {name: a}\n  - {name: a}\n", "t.tests.yaml")
    assert "two cases are named 'a'" in str(twice.value.problems[0])
    with pytest.raises(DefinitionError) as syntax:
        parse_tests("cases: [\n", "t.tests.yaml")
    assert str(syntax.value.problems[0]).startswith("t.tests.yaml:2:1: YAML syntax error")


# -- guards, flags, a live controller ----------------------------------------------------------------


def test_base_that_is_not_a_commit_is_a_usage_error(pr: Path) -> None:
    """--base naming nothing exits 2 and says to fetch it."""
    result = wfctl(pr, "--base", "origin/nope")
    assert result.exit_code == 2
    assert "--base 'origin/nope' is not a commit" in result.stderr and "git fetch" in result.stderr


def test_feature_flag_off_skips_the_account_with_a_note(pr: Path, tmp_path: Path) -> None:
    """With workflow_dry_run off for acme, check still validates and plans but dry-runs nothing there."""
    fix(pr)
    config = tmp_path / "flags.yaml"
    config.write_text("accounts:\n  acme: {features: {workflow_dry_run: false}}\n")
    result = wfctl(pr, "--base", "main", config=config)
    assert result.exit_code == 0
    assert "dry run: 0/0 case(s) passed" in result.stdout
    assert ("note: acme/changed: not dry-run: dry run is disabled for account acme (feature flag workflow_dry_run)"
            in result.stdout)


def test_a_restore_is_detected_and_a_live_controller_warns_it_would_be_held(pr: Path) -> None:
    """Reverting to main's earlier content is 'restored'; --controller turns executions in flight into a warning."""
    repo = make_repo(pr)
    git(pr, "checkout", "-q", "main")
    commit_files(repo, {WF.format("clean"): workflow("clean", subject="Hi"), TESTS.format("clean"): cases_for("Hi")},
                 "Say hi")
    git(pr, "checkout", "-q", "-b", "restore-hello")
    commit_files(repo, {WF.format("clean"): workflow("clean"), TESTS.format("clean"): cases_for("Hello")},
                 "Restore clean")
    data = json.loads(wfctl(pr, "--base", "main", "--format", "json").stdout)
    assert [(c["id"], c["change"], c["restored_from"]) for c in data["changes"]] == [
        ("acme/clean", "restored", git(pr, "rev-parse", "main~1"))]
    assert data["ok"] is True

    with http_server() as web:
        in_flight(web, {"running": [{"id": 7}], "waiting": [{"id": 9}]})
        result = wfctl(pr, "--base", "main", "--format", "github", "--controller", web.url, "--token", "t0k")
        assert web.requests[0].headers["Authorization"] == "Bearer t0k"
    assert (f"::warning file={WF.format('clean')},line=1,col=1::acme/clean: the controller would hold this "
            f"restore back now: 2 execution(s) in flight (7, 9)") in result.stdout.splitlines()


def in_flight(web: HttpServer, by_status: dict[str, list[dict[str, Any]]]) -> None:
    """Answer /api/v1/executions?status=S with the executions of that status (and no account directory)."""
    def answer(path: str) -> Response:
        if path.endswith("/directory"):
            return Response(404, b'{"error": {"code": "not_found", "message": "no directory loaded"}}')
        status = re.search(r"status=(\w+)", path)
        items = by_status.get(status.group(1), []) if status else []
        return Response(200, json.dumps({"executions": items}).encode())

    web.answer = answer  # type: ignore[method-assign,assignment]


# -- the example repository --------------------------------------------------------------------------


def test_the_example_repository_passes_check() -> None:
    """`wfctl check` on this project's workflows.d passes, every workflow by its own test cases."""
    result = CliRunner().invoke(cli, ["--repo", str(ROOT), "--data-dir", str(ROOT / ".wfctl"), "check",
                                      "--format", "json"], catch_exceptions=False)
    data = json.loads(result.stdout)
    assert result.exit_code == 0, [c["failures"] for c in data["cases"] if not c["ok"]]
    examples = {f"{p.parent.name}/{p.stem}" for p in (ROOT / "workflows.d").glob("*/*.yaml")
                if not p.name.endswith(".tests.yaml")}
    assert {c["workflow"] for c in data["cases"]} == examples and len(examples) == 12
    assert not any(c["synthetic"] for c in data["cases"])


# Branches a dry run cannot reach: escalate-urgent-tickets only starts on tickets that are not closed.
UNREACHABLE = {("acme/escalate-urgent-tickets", "still-open"): "else"}


def test_example_tests_take_both_branches_of_every_if() -> None:
    """Across its cases, each example's `if` is expected to take then and else (unless one cannot happen)."""
    for tests in sorted((ROOT / "workflows.d").glob("*/*.tests.yaml")):
        key = f"{tests.parent.name}/{tests.name.removesuffix('.tests.yaml')}"
        definition = YAML(typ="safe").load(tests.with_name(tests.name.replace(".tests.yaml", ".yaml")).read_text())
        ifs = [a["id"] for a in _actions(definition["spec"]["actions"]) if a["type"] == "if"]
        cases = parse_tests(tests.read_text(), str(tests)).cases
        for action_id in ifs:
            taken = {c.expect.branches[action_id] for c in cases if action_id in c.expect.branches}
            wanted = {"then", "else"} - {UNREACHABLE.get((key, action_id))}
            assert taken == wanted, f"{key}: {action_id} is expected to take {sorted(taken)}"


def _actions(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [x for a in actions for x in [a, *_actions(a.get("then") or []), *_actions(a.get("else") or [])]]


# -- CI files ----------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def test_github_actions_workflow_runs_check_on_pull_requests() -> None:
    """The GitHub Actions example: pull_request, full history, Python 3.11, wfctl check as annotations and JUnit."""
    flow = load_yaml(ROOT / "deploy/ci/github-actions.yml")
    assert "pull_request" in (flow.get("on") or flow.get(True))  # YAML 1.1 readers take `on` for true
    steps = flow["jobs"]["check"]["steps"]
    checkout = next(s for s in steps if str(s.get("uses", "")).startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    python = next(s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python@"))
    assert str(python["with"]["python-version"]) == "3.11"
    runs = "\n".join(s.get("run", "") for s in steps)
    assert 'pip install "wfctl @ git+https://github.com/OWNER/wfctl"' in runs
    assert "wfctl check --base origin/${{ github.base_ref }} --format github" in runs
    assert "--format junit --output wfctl-check.xml" in runs
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    assert upload["with"]["path"] == "wfctl-check.xml" and upload["if"] == "always()"


def test_github_actions_impact_preview_comments_on_the_pull_request() -> None:
    """The impact-preview job asks the controller (URL and token from the repository's settings), renders
    Markdown and posts it as a comment, with the one extra permission that takes."""
    job = load_yaml(ROOT / "deploy/ci/github-actions.yml")["jobs"]["impact-preview"]
    assert job["if"] == "${{ vars.WFC_CONTROLLER_URL != '' }}"
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    replay = next(s for s in job["steps"] if "--replay" in s.get("run", ""))
    assert replay["env"] == {"WFC_TOKEN": "${{ secrets.WFC_TOKEN }}", "CONTROLLER": "${{ vars.WFC_CONTROLLER_URL }}",
                             "BASE": "origin/${{ github.base_ref }}"}  # never pasted into the shell command
    assert "${{" not in replay["run"]
    for part in ('wfctl check --base "$BASE" --controller "$CONTROLLER"', "--replay 200",
                 "--format markdown --output wfctl-impact.md"):
        assert part in replay["run"]
    comment = job["steps"][-1]
    assert "${{" not in comment["run"] and f'startswith("{MARKER}")' in comment["run"]
    assert "gh pr comment" in comment["run"] and "--body-file wfctl-impact.md" in comment["run"]
    assert comment["env"]["GH_TOKEN"] == "${{ github.token }}"


def test_gitlab_pipeline_runs_check_on_merge_requests() -> None:
    """The GitLab example runs in merge-request pipelines and keeps the JUnit report."""
    pipeline = load_yaml(ROOT / "deploy/ci/gitlab-ci.yml")
    [job] = [v for k, v in pipeline.items() if isinstance(v, dict) and "script" in v]
    assert any(r.get("if") == '$CI_PIPELINE_SOURCE == "merge_request_event"' for r in job["rules"])
    script = "\n".join(job["script"])
    assert "wfctl check --base origin/$CI_MERGE_REQUEST_TARGET_BRANCH_NAME" in script
    assert "--format junit --output wfctl-check.xml" in script
    assert job["artifacts"]["reports"]["junit"] == "wfctl-check.xml"
    assert job["artifacts"]["when"] == "always"
    assert str(pipeline["variables"]["GIT_DEPTH"]) == "0"


def test_pre_commit_hook_validates_workflow_files(tmp_path: Path) -> None:
    """The pre-commit hook runs `wfctl validate` on staged workflow files, which exits 1 on a broken one."""
    [hook] = load_yaml(ROOT / ".pre-commit-hooks.yaml")
    assert (hook["id"], hook["entry"], hook["language"], hook["pass_filenames"]) == (
        "wfctl-validate", "wfctl validate", "python", True)
    files = re.compile(hook["files"])
    assert files.search("workflows.d/acme/a.yaml") and files.search("workflows.d/acme/a.tests.yml")
    assert not files.search("deploy/ci/gitlab-ci.yml") and not files.search("README.md")
    path = tmp_path / "repo"
    commit_files(make_repo(path), {WF.format("a"): broken_duration("a")}, "broken")
    result = CliRunner().invoke(cli, ["--repo", str(path), *hook["entry"].split()[1:], str(path / WF.format("a"))])
    assert result.exit_code == 1 and ":19:7: " in result.stdout


def test_ci_readme_is_short_and_names_every_file() -> None:
    """deploy/ci/README.md says in ten lines how to use each of the three files."""
    readme = (ROOT / "deploy/ci/README.md").read_text()
    assert len(readme.strip().splitlines()) <= 10
    for name in ("github-actions.yml", "gitlab-ci.yml", ".pre-commit-hooks.yaml", "wfctl-validate"):
        assert name in readme
