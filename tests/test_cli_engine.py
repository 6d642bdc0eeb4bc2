"""The engine commands of `wfctl`: run, executions, records, directory, mail — output, JSON keys and exit codes."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from gitutil import commit_files, make_repo

from controller.cli import cli

WF = "workflows.d/acme/{}.yaml"
DIRECTORY = """\
users:
  - {id: u_alice, name: Alice, email: alice@acme.test}
mailboxes:
  - {id: mb_support, name: Support, address: support@acme.test, kind: outbox}
channels:
  - {id: C1, name: oncall, webhook_url: "http://127.0.0.1:9/hook"}
"""


def wf(name: str, trigger: str, actions: str, *, enabled: bool = True) -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n"
            f"  enabled: {'true' if enabled else 'false'}\n  trigger: {trigger}\n  actions:\n{actions}")


WORKFLOWS = {
    # Says who it ran for: the record's title, else the payload's name.
    "hello": wf("hello", "{type: manual, entities: [ticket]}",
                "    - id: greet\n      type: set\n      vars:\n        who: \"{{ record.title if record "
                "else (trigger.body.name if trigger.body is defined else 'nobody') }}\"\n"),
    "broken": wf("broken", "{type: manual, entities: [ticket]}", "    - {id: boom, type: set, vars: {x: '{{ nope }}'}}\n"),
    "slow": wf("slow", "{type: manual, entities: [ticket]}", "    - {id: nap, type: wait, duration: 1d}\n"),
    "off": wf("off", "{type: manual, entities: [ticket]}", "    - {id: a, type: set, vars: {x: 1}}\n", enabled=False),
    "on-urgent": wf("on-urgent", "{type: record, entity: ticket, events: [created, updated], "
                                 "when: \"{{ record.priority == 'urgent' }}\"}",
                    "    - {id: seen, type: set, vars: {title: '{{ record.title }}'}}\n"),
    "inbox": wf("inbox", "{type: email, mailbox: 'mailbox:mb_support'}",
                "    - {id: note, type: set, vars: {subject: '{{ trigger.subject }}'}}\n"),
}
EXECUTION_KEYS = {"id", "workflow", "version", "status", "trigger", "started_at", "finished_at", "duration_ms",
                  "error", "failure", "waited_seconds", "retry_of", "parent_id", "created_at", "output", "steps"}
STEP_KEYS = {"action_id", "type", "status", "input", "output", "error", "failure", "attempts", "attempt_log", "idempotency_key",
             "started_at", "finished_at",
             "wait_seconds"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository of engine workflows, its directory loaded and synced through the CLI."""
    path = tmp_path / "repo"
    commit_files(make_repo(path), {WF.format(name): text for name, text in WORKFLOWS.items()}, "add workflows")
    directory = tmp_path / "acme.yaml"
    directory.write_text(DIRECTORY)
    loaded = wfctl(path, "directory", "load", str(directory), "--account", "acme")
    assert loaded.exit_code == 0, loaded.output
    assert loaded.stdout.strip() == "directory of acme: 1 channel(s), 1 mailbox(s), 0 object_type(s), 1 user(s)"
    synced = wfctl(path, "sync")
    assert synced.exit_code == 0, synced.output
    return path


def wfctl(repo: Path, *args: str) -> Result:
    base = ["--repo", str(repo), "--data-dir", str(repo.parent / "data"), "--db", f"sqlite:///{repo.parent / 'wfctl.db'}"]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_error_line(result: Result, code: int, text: str) -> None:
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("wfctl: error: ") and len(result.stderr.strip().splitlines()) == 1
    assert text in result.stderr


def create_ticket(repo: Path, data: dict[str, Any]) -> dict[str, Any]:
    return as_json(wfctl(repo, "records", "create", "ticket", "--account", "acme", "--data", json.dumps(data)))


def test_run_prints_the_id_and_wait_sets_the_exit_code(repo: Path, tmp_path: Path) -> None:
    """run prints the new execution's id; with --wait it exits 0 on success and 1 on failure."""
    queued = wfctl(repo, "run", "acme/hello")
    assert queued.exit_code == 0 and queued.stdout.strip().isdigit()
    assert as_json(wfctl(repo, "executions", "show", queued.stdout.strip(), "--json"))["status"] == "queued"
    assert set(as_json(wfctl(repo, "run", "acme/hello", "--json"))) == {"execution_id"}

    ticket = create_ticket(repo, {"title": "Printer {{ 7*7 }}"})["record"]
    on_record = wfctl(repo, "run", "acme/hello", "--record", f"ticket:{ticket['id']}", "--wait", "--json")
    result = as_json(on_record)
    assert (result["status"], result["output"]) == ("succeeded", {"who": "Printer {{ 7*7 }}"})
    assert result["trigger"]["record"]["id"] == ticket["id"]

    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"name": "Jane"}))
    with_payload = wfctl(repo, "run", "acme/hello", "--payload", str(payload), "--wait")
    assert with_payload.exit_code == 0 and with_payload.stdout.strip().endswith("succeeded")
    assert with_payload.stdout.startswith("execution ")

    failed = wfctl(repo, "run", "acme/broken", "--wait")
    assert failed.exit_code == 1
    assert "failed: step boom" in failed.stdout


def test_executions_list_filters_and_show_has_the_contract_keys(repo: Path) -> None:
    """executions list filters by workflow and status, newest first; show --json has the documented keys."""
    ok = as_json(wfctl(repo, "run", "acme/hello", "--wait", "--json"))["id"]
    bad = as_json_any(wfctl(repo, "run", "acme/broken", "--wait", "--json"))["id"]
    everything = as_json(wfctl(repo, "executions", "list", "--json"))
    assert [e["id"] for e in everything] == [bad, ok]
    assert [e["id"] for e in as_json(wfctl(repo, "executions", "list", "--workflow", "acme/hello", "--json"))] == [ok]
    assert [e["id"] for e in as_json(wfctl(repo, "executions", "list", "--status", "failed", "--json"))] == [bad]
    assert as_json(wfctl(repo, "executions", "list", "--workflow", "acme/slow", "--json")) == []
    text = wfctl(repo, "executions", "list").stdout
    assert "acme/hello" in text and "acme/broken" in text and "step boom" in text

    shown = as_json(wfctl(repo, "executions", "show", str(ok), "--json"))
    assert set(shown) == EXECUTION_KEYS
    assert (shown["workflow"], shown["version"], shown["status"], shown["error"], shown["retry_of"]) == (
        "acme/hello", 1, "succeeded", None, None)
    assert shown["trigger"] == {"type": "manual", "source": "run", "input": {}}
    assert shown["duration_ms"] >= 0 and shown["finished_at"] >= shown["started_at"]
    [step] = shown["steps"]
    assert set(step) == STEP_KEYS
    assert (step["action_id"], step["type"], step["status"], step["attempts"], step["output"]) == (
        "greet", "set", "succeeded", 1, {"who": "nobody"})
    failed = as_json(wfctl(repo, "executions", "show", str(bad), "--json"))
    assert failed["error"].startswith("step boom: ") and failed["steps"][0]["error"] == failed["error"]
    assert f"execution {bad} of acme/broken v1: failed" in wfctl(repo, "executions", "show", str(bad)).stdout
    one_error_line(wfctl(repo, "executions", "show", "999"), 2, "no execution 999")


def as_json_any(result: Result) -> Any:
    """JSON output of a command whose exit code says "no" (1) but still prints its answer."""
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def test_retry_and_cancel(repo: Path) -> None:
    """retry makes a linked execution (only of failed or terminated ones); cancel terminates a waiting one."""
    failed = as_json_any(wfctl(repo, "run", "acme/broken", "--wait", "--json"))["id"]
    retried = wfctl(repo, "executions", "retry", str(failed))
    assert retried.exit_code == 0 and retried.stdout.strip().isdigit()
    again = as_json(wfctl(repo, "executions", "show", retried.stdout.strip(), "--json"))
    assert (again["retry_of"], again["version"], again["status"]) == (failed, 1, "queued")
    latest = wfctl(repo, "executions", "retry", str(failed), "--latest")
    assert latest.exit_code == 0 and latest.stdout.strip() != retried.stdout.strip()

    succeeded = as_json(wfctl(repo, "run", "acme/hello", "--wait", "--json"))["id"]
    one_error_line(wfctl(repo, "executions", "retry", str(succeeded)), 2, "only failed or terminated")

    slow = wfctl(repo, "run", "acme/slow").stdout.strip()
    assert as_json(wfctl(repo, "executions", "show", slow, "--json"))["status"] == "queued"
    cancelled = wfctl(repo, "executions", "cancel", slow)
    assert cancelled.exit_code == 0 and cancelled.stdout.strip() == f"execution {slow} terminated"
    shown = as_json(wfctl(repo, "executions", "show", slow, "--json"))
    assert (shown["status"], shown["error"]) == ("terminated", "cancelled by an operator")
    one_error_line(wfctl(repo, "executions", "cancel", slow), 2, "already terminated")
    assert wfctl(repo, "executions", "retry", slow).exit_code == 0  # a terminated one may be retried


def test_records_fire_record_triggers(repo: Path) -> None:
    """records create/update print the record and the executions their triggers started."""
    low = create_ticket(repo, {"priority": "low", "title": "printer"})
    assert low["executions"] == [] and low["record"]["title"] == "printer" and low["record"]["type"] == "ticket"
    urgent = create_ticket(repo, {"priority": "urgent", "title": "VPN"})
    [started] = urgent["executions"]
    updated = as_json(wfctl(repo, "records", "update", f"ticket:{low['record']['id']}", "--account", "acme",
                            "--data", '{"priority": "urgent"}'))
    assert updated["record"] | {"priority": "urgent"} == updated["record"] and updated["record"]["title"] == "printer"
    [started_by_update] = updated["executions"]
    execution = as_json(wfctl(repo, "executions", "show", str(started_by_update), "--json"))
    assert execution["workflow"] == "acme/on-urgent" and execution["trigger"]["event"] == "updated"
    assert as_json(wfctl(repo, "executions", "show", str(started), "--json"))["trigger"]["event"] == "created"


def test_record_errors_are_one_line_with_exit_2(repo: Path) -> None:
    """Bad --data, a non-object, an unknown record, a bad reference or type: one line on stderr, exit 2."""
    one_error_line(wfctl(repo, "records", "create", "ticket", "--account", "acme", "--data", "{nope"), 2,
                   "--data is not JSON")
    one_error_line(wfctl(repo, "records", "create", "ticket", "--account", "acme", "--data", "[1]"), 2,
                   "--data must be a JSON object")
    one_error_line(wfctl(repo, "records", "update", "ticket:404", "--account", "acme", "--data", "{}"), 2,
                   "record ticket:404 does not exist")
    one_error_line(wfctl(repo, "records", "update", "ticket", "--account", "acme", "--data", "{}"), 2,
                   "is not a record reference")
    one_error_line(wfctl(repo, "records", "create", "spaceship", "--account", "acme", "--data", "{}"), 2,
                   "'spaceship' is not a record type")


def test_run_errors(repo: Path, tmp_path: Path) -> None:
    """Unknown workflow, record or payload file exit 2 with one line; a disabled workflow exits 3."""
    one_error_line(wfctl(repo, "run", "acme/nope"), 2, "no workflow 'acme/nope'")
    one_error_line(wfctl(repo, "run", "acme/hello", "--record", "ticket:404"), 2, "record ticket:404 does not exist")
    one_error_line(wfctl(repo, "run", "acme/hello", "--record", "deal:1"), 2, "runs on ticket records, not deal")
    one_error_line(wfctl(repo, "run", "no-slash"), 2, "expected ACCOUNT/NAME")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    one_error_line(wfctl(repo, "run", "acme/hello", "--payload", str(bad)), 2, "not a JSON file")
    one_error_line(wfctl(repo, "run", "acme/off"), 3, "acme/off is disabled")
    assert as_json(wfctl(repo, "executions", "list", "--json")) == []


def test_directory_load_and_set_status(repo: Path, tmp_path: Path) -> None:
    """A bad directory file is located (exit 1); set-status changes one entry; an unknown one exits 2."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("users:\n  - {id: u_bob, email: not-an-address}\n")
    bad = wfctl(repo, "directory", "load", str(broken), "--account", "acme")
    assert bad.exit_code == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert f"{broken}:2:" in bad.stderr and "not an e-mail address" in bad.stderr
    changed = wfctl(repo, "directory", "set-status", "mailbox:mb_support", "deactivated", "--account", "acme")
    assert changed.exit_code == 0 and changed.stdout.splitlines() == [
        "mailbox:mb_support is deactivated",
        "suspended acme/inbox (it depends on it); `wfctl resume acme/inbox` once it is active again"]
    one_error_line(wfctl(repo, "directory", "set-status", "mailbox:mb_nope", "active", "--account", "acme"), 2,
                   "mailbox:mb_nope is not in the directory of account 'acme'")
    one_error_line(wfctl(repo, "directory", "set-status", "mailbox:mb_support", "sleepy", "--account", "acme"), 2,
                   "unknown status 'sleepy'")


def test_mail_deliver_starts_the_mailbox_workflows(repo: Path, tmp_path: Path) -> None:
    """mail deliver hands an .eml to the workflows of that mailbox and prints the executions it started."""
    message = EmailMessage()
    message["From"] = "carol@customer.test"
    message["To"] = "support@acme.test"
    message["Subject"] = "Printer on fire"
    message.set_content("Help")
    eml = tmp_path / "in.eml"
    eml.write_bytes(message.as_bytes())
    delivered = as_json(wfctl(repo, "mail", "deliver", "--account", "acme", "--mailbox", "mailbox:mb_support",
                              str(eml)))
    [execution_id] = delivered["executions"]
    shown = as_json(wfctl(repo, "executions", "show", str(execution_id), "--json"))
    assert shown["workflow"] == "acme/inbox" and shown["trigger"]["subject"] == "Printer on fire"
    other = as_json(wfctl(repo, "mail", "deliver", "--account", "acme", "--mailbox", "mailbox:mb_other", str(eml)))
    assert other == {"executions": []}
    one_error_line(wfctl(repo, "mail", "deliver", "--account", "acme", "--mailbox", "mb_support", str(eml)), 2,
                   "not a mailbox reference")


def test_executions_show_prints_the_trace_as_a_tree_with_inputs_and_outputs(repo: Path) -> None:
    """Text: one line per step (status, attempts, duration), its resolved input and output below, cut with a hint."""
    ticket = as_json(wfctl(repo, "records", "create", "ticket", "--account", "acme", "--data",
                           json.dumps({"title": "x" * 300})))["record"]["id"]
    execution = as_json(wfctl(repo, "run", "acme/hello", "--record", f"ticket:{ticket}", "--json"))["execution_id"]
    assert wfctl(repo, "run", "acme/hello", "--record", f"ticket:{ticket}", "--wait").exit_code == 0
    shown = wfctl(repo, "executions", "show", str(execution)).stdout.splitlines()
    assert shown[0].startswith(f"execution {execution} of acme/hello v1: succeeded")
    assert shown[2].startswith("  greet (set) succeeded attempts=1")
    assert shown[3].startswith('    input:  {"vars": {"who": "xxx') and shown[3].endswith("(cut; --json shows all)")
    assert shown[4].startswith('    output: {"who": "xxx')
    assert "\x1b[" not in "\n".join(shown)  # no colours when not on a terminal
