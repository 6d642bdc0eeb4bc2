"""`wfctl check|validate --directory` judge references exactly as the controller does: same workflow, same verdict."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from enginekit import kit

from controller.cli import cli
from controller.model.directory import parse_directory
from controller.store import views
from controller.store.directory import replace_account

WF = "workflows.d/acme/{}.yaml"


def wf(name: str, mailbox: str) -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n"
            f"  trigger: {{type: manual, entities: [ticket]}}\n  actions:\n"
            f"    - {{id: tell, type: email.send, mailbox: '{mailbox}', to: a@b.test, subject: s, body: b}}\n")


DIRECTORY = "mailboxes:\n  - {id: mb_support, address: support@acme.test, kind: outbox}\n"
WITH_SALES = DIRECTORY + "  - {id: mb_sales, address: sales@acme.test, kind: outbox}\n"


def controller_messages(tmp_path: Path, directory: str) -> dict[str, str]:
    with kit(tmp_path, f"sqlite:///{tmp_path / 'store.db'}") as k:
        with k.store.tx() as conn:
            replace_account(conn, "acme", parse_directory(directory, "acme.yaml"), k.clock.now())
        k.deploy({WF.format("ok"): wf("ok", "mailbox:mb_support"), WF.format("sales"): wf("sales", "mailbox:mb_sales")})
        with k.store.read() as conn:
            return {w["id"]: w["message"] for w in views.status(conn)["workflows"]}


def check_messages(tmp_path: Path, directory: str) -> tuple[int, int, dict[str, list[str]]]:
    from gitutil import commit_files, make_repo

    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {WF.format("ok"): wf("ok", "mailbox:mb_support"),
                                   WF.format("sales"): wf("sales", "mailbox:mb_sales")}, "add")
    folder = tmp_path / "directory"
    folder.mkdir()
    (folder / "acme.yaml").write_text(directory)
    checked = CliRunner().invoke(cli, ["--repo", str(repo), "check", "--directory", str(folder), "--format", "json"])
    validated = CliRunner().invoke(cli, ["--repo", str(repo), "validate", "--directory", str(folder)])
    problems: dict[str, list[str]] = {}
    for problem in json.loads(checked.stdout)["problems"]:
        problems.setdefault(Path(problem["path"]).stem, []).append(problem["message"])
    return checked.exit_code, validated.exit_code, problems


def test_a_missing_mailbox_is_refused_by_both_with_the_same_message(tmp_path: Path) -> None:
    """The controller keeps the workflow Invalid; check and validate fail it, with the controller's words."""
    live = controller_messages(tmp_path / "live", DIRECTORY)
    check_code, validate_code, problems = check_messages(tmp_path / "ci", DIRECTORY)
    assert (check_code, validate_code) == (1, 1)
    assert set(problems) == {"sales"} and live["acme/ok"] == ""
    assert problems["sales"][0] in live["acme/sales"] and "mailbox:mb_sales is not in the directory" in live["acme/sales"]


def test_with_the_mailbox_in_the_directory_both_accept(tmp_path: Path) -> None:
    """Add the mailbox to the directory: the controller applies both, check and validate pass."""
    live = controller_messages(tmp_path / "live", WITH_SALES)
    assert live == {"acme/ok": "", "acme/sales": ""}
    assert check_messages(tmp_path / "ci", WITH_SALES) == (0, 0, {})


def test_without_a_directory_check_says_once_that_references_were_not_checked(tmp_path: Path) -> None:
    """No --directory: both pass the missing mailbox, and say so once (a note), not silently."""
    from gitutil import commit_files, make_repo

    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {WF.format("sales"): wf("sales", "mailbox:mb_sales")}, "add")
    checked = CliRunner().invoke(cli, ["--repo", str(repo), "check"])
    assert checked.exit_code == 0 and checked.stdout.count("references to the account directory") == 1
    validated = CliRunner().invoke(cli, ["--repo", str(repo), "validate"])
    assert validated.exit_code == 0 and validated.stderr.count("were not checked") == 1


def test_check_with_a_controller_takes_its_live_directory(tmp_path: Path) -> None:
    """`check --controller URL --token T` checks references against the directory the controller has loaded."""
    from gitutil import commit_files, make_repo

    from controller.security import tokens
    from controller.settings import Settings
    from webhooks import create_app, start_server

    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {WF.format("sales"): wf("sales", "mailbox:mb_sales")}, "add")
    ops = "users:\n  - {id: u_ops, name: Ops, email: ops@acme.test, permissions: [workflow.read]}\n"
    with kit(tmp_path / "live", f"sqlite:///{tmp_path / 'store.db'}") as k:
        with k.store.tx() as conn:
            replace_account(conn, "acme", parse_directory(ops + DIRECTORY, "acme.yaml"), k.clock.now())
            bearer = tokens.create(conn, "acme", "u_ops", ["workflow.read"], k.clock.now()).bearer
        app = create_app(Settings(repo=str(k.path), data_dir=k.data_dir), k.store, k.engine,
                         environ={"WFC_SECRET_KEY": ""})
        server = start_server(app, port=0)
        try:
            answer = CliRunner().invoke(cli, ["--repo", str(repo), "check", "--format", "json", "--controller",
                                              server.url, "--token", bearer])
            with k.store.tx() as conn:
                replace_account(conn, "acme", parse_directory(ops + WITH_SALES, "acme.yaml"), k.clock.now())
            fixed = CliRunner().invoke(cli, ["--repo", str(repo), "check", "--controller", server.url, "--token", bearer])
        finally:
            server.stop()
    problems = json.loads(answer.stdout)["problems"]
    assert answer.exit_code == 1 and "mailbox:mb_sales is not in the directory" in problems[0]["message"]
    assert fixed.exit_code == 0 and "were not checked" not in fixed.stdout
