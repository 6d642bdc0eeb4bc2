"""Export, import and promote across accounts: bindings, no leaks, every rejection, a round trip through git.

Real repositories and stores; the CLI through click's runner; the core (document.export/plan) also
under hypothesis: export then import with identity bindings gives the same definitions back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from gitutil import AUTHOR_EMAIL, commit_files, make_repo
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import ALLOW_LOOPBACK

from controller.cli import cli
from controller.model import Workflow, yamlfile
from controller.model.entries import DirectoryEntry
from controller.portable import document

STAGING = """
users:
  - {id: u_sam, name: Sam Stager, email: sam@example.org}
mailboxes:
  - {id: mb_stage, name: Support, address: support@example.org, kind: outbox}
channels:
  - {id: CS1, name: oncall, webhook_url: "http://127.0.0.1:9/stage"}
object_types:
  - {id: ot_9, name: Escalation}
"""
PROD = """
users:
  - {id: u_pat, name: Pat Producer, email: pat@example.com}
mailboxes:
  - {id: mb_prod, name: Support, address: support@example.com, kind: outbox}
  - {id: mb_old, name: Old, address: old@example.com, kind: outbox, status: deactivated}
  - {id: mb_same, name: Same, address: support@example.org, kind: outbox}
channels:
  - {id: CP1, name: oncall, webhook_url: "http://127.0.0.1:9/prod"}
object_types:
  - {id: ot_42, name: Escalation}
"""
NOTIFY = """apiVersion: workflows/v1
kind: Workflow
metadata: {name: notify, description: Tell support, owner: sam@example.org}
spec:
  trigger: {type: manual, entities: [ticket]}
  actions:
    - {id: mail, type: email.send, mailbox: "mailbox:mb_stage", to: ["user:u_sam", "ops@example.net"], subject: hi, body: hi}
    - {id: page, type: channel.post, channel: "channel:CS1", text: "{{ record.id }}"}
    - {id: ask, type: workflow.call, workflow: helper}
"""
HELPER = """apiVersion: workflows/v1
kind: Workflow
metadata: {name: helper}
spec:
  trigger: {type: manual, entities: [ticket]}
  actions:
    - {id: make, type: record.create, entity: "object_type:ot_9", set: {title: x}}
"""
BINDINGS = "mailbox-1: mailbox:mb_prod\nuser-1: user:u_pat\nchannel-1: channel:CP1\nobject-type-1: object_type:ot_42\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    commit_files(make_repo(path), {"workflows.d/staging/notify.yaml": NOTIFY, "workflows.d/staging/helper.yaml": HELPER},
                 "staging workflows")
    for account, text in (("staging", STAGING), ("prod", PROD)):
        (tmp_path / f"{account}.yaml").write_text(text)
        assert wfctl(path, "directory", "load", str(tmp_path / f"{account}.yaml"), "--account", account).exit_code == 0
    assert wfctl(path, "sync").exit_code == 0
    return path


def wfctl(repo: Path, *args: str) -> Result:
    config = repo.parent / "data" / "config.yaml"
    if not config.exists():  # the directories' chat webhooks are on 127.0.0.1
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(ALLOW_LOOPBACK)
    base = ["--repo", str(repo), "--data-dir", str(repo.parent / "data"), "--db", f"sqlite:///{repo.parent / 'w.db'}"]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def exported(repo: Path, *args: str) -> dict[str, Any]:
    result = wfctl(repo, "export", "staging/notify", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_export_leaks_nothing_of_the_source_account(repo: Path) -> None:
    text = wfctl(repo, "export", "staging/notify").stdout
    for secret in ("staging", "mb_stage", "u_sam", "CS1", "ot_9", AUTHOR_EMAIL, "sam@example.org"[:3] + "@"):
        assert secret not in text, secret
    import git

    for commit in git.Repo(repo).iter_commits():
        assert commit.hexsha not in text and commit.hexsha[:7] not in text
    doc = json.loads(text)
    assert doc["format"] == "wfctl.export/v1" and [w["metadata"]["name"] for w in doc["workflows"]] == ["notify"]
    assert {(b["name"], b["kind"], b["hint"]) for b in doc["bindings"]} == {
        ("mailbox-1", "mailbox", "support@example.org"), ("user-1", "user", "Sam Stager"),
        ("channel-1", "channel", "oncall"), ("workflow-1", "workflow", "helper")}
    assert next(b for b in doc["bindings"] if b["name"] == "user-1")["used_by"] == ["notify: spec.actions[0].to[0]"]
    assert "owner" not in doc["workflows"][0]["metadata"]
    assert wfctl(repo, "export", "staging/notify").stdout == text  # the same bytes every time
    deps = exported(repo, "--with-dependencies")
    assert [w["metadata"]["name"] for w in deps["workflows"]] == ["notify", "helper"]
    assert {b["kind"] for b in deps["bindings"]} == {"mailbox", "user", "channel", "object_type"}


def test_round_trip_staging_to_prod_through_git_and_a_sync(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "notify.json"
    assert wfctl(repo, "export", "staging/notify", "--with-dependencies", "--output", str(out)).exit_code == 0
    (tmp_path / "prod-bindings.yaml").write_text(BINDINGS)
    done = wfctl(repo, "import", str(out), "--account", "prod", "--bindings", str(tmp_path / "prod-bindings.yaml"),
                 "--commit")
    assert done.exit_code == 0, done.output
    written = (repo / "workflows.d/prod/notify.yaml").read_text()
    assert written.startswith("# Imported from notify.json (a wfctl export)")
    assert "mailbox:mb_prod" in written and "user:u_pat" in written and "channel:CP1" in written
    assert "object_type:ot_42" in (repo / "workflows.d/prod/helper.yaml").read_text()
    assert Workflow.model_validate(yamlfile.parse(written, "notify.yaml")).metadata.name == "notify"
    import git

    assert git.Repo(repo).head.commit.message.startswith("Import helper, notify into prod")
    assert wfctl(repo, "sync").exit_code == 0
    status = json.loads(wfctl(repo, "status", "--json").stdout)
    prod = {w["id"]: w for w in status["workflows"] if w["id"].startswith("prod/")}
    assert set(prod) == {"prod/notify", "prod/helper"}
    assert all(w["sync"] == "Synced" and w["enabled"] is False for w in prod.values())
    dry = wfctl(repo, "dry-run", "prod/notify", "--json")
    assert dry.exit_code == 0, dry.output
    steps = json.loads(dry.stdout)
    assert "support@example.com" in json.dumps(steps)  # the prod mailbox, resolved by the dry run


def test_every_rejection_is_reported_together_and_nothing_is_written(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "n.json"
    out.write_text(json.dumps(exported(repo)))
    result = wfctl(repo, "import", str(out), "--account", "prod", "--bind", "mailbox-1=mailbox:mb_old",
                   "--bind", "user-1=channel:CP1", "--bind", "channel-1=channel:NOPE")
    assert result.exit_code == 1
    assert result.stderr.startswith("wfctl: error: not imported: 4 binding(s) open or invalid")
    for text in ("mailbox:mb_old is deactivated in the target account", "channel:CP1 is a channel, not a user",
                 "channel:NOPE is not in the target account's directory",
                 "open: bind it with --bind workflow-1=workflow:ID (hint: helper)"):
        assert text in result.stdout, text
    assert not (repo / "workflows.d/prod").exists()
    bad = tmp_path / "bad.json"
    for content, message in (("{", "not a wfctl export"), ('{"format": "other/v9"}', "format 'other/v9'"),
                             ('{"format": "wfctl.export/v1", "workflows": []}', "non-empty list 'workflows'")):
        bad.write_text(content)
        refused = wfctl(repo, "import", str(bad), "--account", "prod")
        assert refused.exit_code == 2 and message in refused.stderr
    unknown = wfctl(repo, "import", str(out), "--account", "prod", "--bind", "nope-1=user:u_pat")
    assert unknown.exit_code == 2 and "no binding nope-1 in the document" in unknown.stderr


def test_name_clash_and_a_cycle_with_existing_workflows(repo: Path, tmp_path: Path) -> None:
    # prod already has helper, which calls notify: importing notify (calling helper) closes a loop.
    commit_files(__import__("git").Repo(repo), {"workflows.d/prod/helper.yaml": HELPER.replace(
        "    - {id: make, type: record.create, entity: \"object_type:ot_9\", set: {title: x}}",
        "    - {id: back, type: workflow.call, workflow: notify}")}, "prod helper")
    out = tmp_path / "n.json"
    out.write_text(json.dumps(exported(repo)))
    (tmp_path / "b.yaml").write_text(BINDINGS)
    cycle = wfctl(repo, "import", str(out), "--account", "prod", "--bindings", str(tmp_path / "b.yaml"),
                  "--bind", "workflow-1=helper")
    assert cycle.exit_code == 1 and "workflow.call cycle: notify -> helper -> notify" in cycle.stdout
    deps = tmp_path / "d.json"
    deps.write_text(json.dumps(exported(repo, "--with-dependencies")))
    clash = wfctl(repo, "import", str(deps), "--account", "prod", "--bindings", str(tmp_path / "b.yaml"))
    assert clash.exit_code == 1 and "helper: a workflow of that name exists in account 'prod'" in clash.stdout
    renamed = wfctl(repo, "import", str(deps), "--account", "prod", "--bindings", str(tmp_path / "b.yaml"),
                    "--rename", "helper=stage-helper")
    assert renamed.exit_code == 0, renamed.output
    assert "workflow: stage-helper" in (repo / "workflows.d/prod/notify.yaml").read_text()


def test_match_by_name_and_dry_run_exit_codes(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    out.write_text(json.dumps(exported(repo, "--with-dependencies")))
    open_ = wfctl(repo, "import", str(out), "--account", "prod", "--dry-run")
    assert open_.exit_code == 1 and "open: bind it with --bind mailbox-1=mailbox:ID (hint: support@example.org)" \
        in open_.stdout
    matched = wfctl(repo, "import", str(out), "--account", "prod", "--match", "name", "--bind", "user-1=user:u_pat",
                    "--dry-run", "--json")
    assert matched.exit_code == 0, matched.output
    plan = json.loads(matched.stdout)
    how = {b["name"]: (b["target"], b["how"]) for b in plan["bindings"]}
    assert how["mailbox-1"] == ("mailbox:mb_same", "--match name")  # the same address
    assert how["channel-1"] == ("channel:CP1", "--match name") and how["object-type-1"][0] == "object_type:ot_42"
    assert how["user-1"] == ("user:u_pat", "--bind")
    assert plan["files"] == ["helper.yaml", "notify.yaml"] and not (repo / "workflows.d/prod").exists()


def test_promote_in_ci_mode(repo: Path, tmp_path: Path) -> None:
    bindings = repo / "deploy/bindings/prod.yaml"
    bindings.parent.mkdir(parents=True)
    bindings.write_text(BINDINGS)
    args = ("promote", "staging/notify", "--to", "prod", "--with-dependencies", "--bindings", str(bindings))
    assert wfctl(repo, *args, "--dry-run").exit_code == 0
    assert not (repo / "workflows.d/prod").exists()
    partial = tmp_path / "partial.yaml"
    partial.write_text("mailbox-1: mailbox:mb_prod\n")
    assert wfctl(repo, "promote", "staging/notify", "--to", "prod", "--bindings", str(partial), "--dry-run"
                 ).exit_code == 1
    assert wfctl(repo, *args, "--commit").exit_code == 0
    assert wfctl(repo, "sync").exit_code == 0
    assert (repo / "workflows.d/prod/notify.yaml").exists()


def test_the_flag_off_refuses_with_exit_3(repo: Path) -> None:
    (repo.parent / "data" / "config.yaml").write_text("accounts:\n  staging: {features: {workflow_import_export: false}}\n")
    refused = wfctl(repo, "export", "staging/notify")
    assert refused.exit_code == 3
    assert refused.stderr == ("wfctl: error: import and export are disabled for account staging (feature flag "
                              "workflow_import_export)\n")


# -- the pure core under hypothesis ---------------------------------------------------------------

ENTRIES = {e.ref: e for e in (
    DirectoryEntry("user", "u_a", "A"), DirectoryEntry("user", "u_b", "B"),
    DirectoryEntry("mailbox", "mb_a", "MA", data={"address": "a@example.com"}),
    DirectoryEntry("mailbox", "mb_b", "MB", data={"address": "b@example.com"}),
    DirectoryEntry("channel", "C1", "one"), DirectoryEntry("object_type", "ot_1", "Thing"))}


@st.composite
def workflows(draw: Any) -> dict[str, Any]:
    users = st.sampled_from(["user:u_a", "user:u_b", "x@example.net"])
    actions: list[dict[str, Any]] = []
    for i in range(draw(st.integers(min_value=1, max_value=5))):
        kind = draw(st.sampled_from(["email.send", "channel.post", "record.create", "workflow.call", "set"]))
        if kind == "email.send":
            actions.append({"id": f"a{i}", "type": kind, "mailbox": draw(st.sampled_from(["mailbox:mb_a", "mailbox:mb_b"])),
                            "to": draw(st.lists(users, min_size=1, max_size=3)), "subject": "s", "body": "b"})
        elif kind == "channel.post":
            actions.append({"id": f"a{i}", "type": kind, "channel": "channel:C1", "text": "t"})
        elif kind == "record.create":
            actions.append({"id": f"a{i}", "type": kind, "entity": draw(st.sampled_from(["object_type:ot_1", "lead"])),
                            "set": {"x": 1}})
        elif kind == "workflow.call":
            actions.append({"id": f"a{i}", "type": kind, "workflow": "other"})
        else:
            actions.append({"id": f"a{i}", "type": "set", "vars": {"n": i}})
    trigger = draw(st.sampled_from([{"type": "manual", "entities": ["ticket"]},
                                    {"type": "email", "mailbox": "mailbox:mb_a"}]))
    raw = {"apiVersion": "workflows/v1", "kind": "Workflow", "metadata": {"name": "w"},
           "spec": {"trigger": trigger, "actions": actions}}
    return Workflow.model_validate(raw).normalized()


def _identity(original: Any, exported_: Any, found: dict[str, str]) -> None:
    """Walk both: where the export has a binding, the original has what it stood for."""
    if isinstance(exported_, dict) and set(exported_) == {"$binding"}:
        found[exported_["$binding"]] = original
    elif isinstance(exported_, dict):
        for key in exported_:
            _identity(original[key], exported_[key], found)
    elif isinstance(exported_, list):
        for a, b in zip(original, exported_, strict=True):
            _identity(a, b, found)


@settings(max_examples=60, deadline=None)
@given(workflows())
def test_export_then_import_with_identity_bindings_gives_the_same_definition(content: dict[str, Any]) -> None:
    doc = document.export({"w": content}, ENTRIES, dependencies=False)
    assert document.dumps(doc) == document.dumps(document.export({"w": content}, ENTRIES, dependencies=False))
    identity: dict[str, str] = {}
    _identity(content, doc["workflows"][0], identity)
    assert set(identity) == {b["name"] for b in doc["bindings"]}
    given_ = {name: (target, "--bind") for name, target in identity.items()}
    plan = document.plan(document.parse(document.dumps(doc), "doc.json"), "acme", entries=ENTRIES,
                         existing={"other": []}, given=given_)
    assert plan.ok, plan.view()
    back = plan.files["w.yaml"]
    assert back["spec"].pop("enabled") is False
    expected = json.loads(json.dumps(content))
    expected["spec"].pop("enabled", None)
    assert back == expected



def test_export_and_validate_over_http(tmp_path: Path, sqlite_url: str) -> None:
    from httpkit import http_kit

    with http_kit(tmp_path, sqlite_url) as h:
        read = h.auth(h.token("workflow.read"))
        answer = h.client.get("/api/v1/workflows/acme/inbox/export", headers=read)
        assert answer.status_code == 200 and answer.json["format"] == "wfctl.export/v1"
        assert [(b["kind"], b["hint"]) for b in answer.json["bindings"]] == [("mailbox", "support@acme.test")]
        body = {"document": answer.json, "bindings": {"mailbox-1": "mailbox:mb_support"}}
        clash = h.client.post("/api/v1/accounts/acme/imports/validate", json=body, headers=read).json
        assert clash["ok"] is False and clash["problems"][0].startswith("inbox: a workflow of that name exists")
        renamed = h.client.post("/api/v1/accounts/acme/imports/validate", json={**body, "renames": {"inbox": "inbox2"}},
                                headers=read).json
        assert renamed["ok"] is True and renamed["files"] == ["inbox2.yaml"]
        assert renamed["bindings"][0]["target"] == "mailbox:mb_support"
        bad = h.client.post("/api/v1/accounts/acme/imports/validate", json={"document": {"format": "x"}}, headers=read)
        assert bad.status_code == 422 and "not a wfctl export" in bad.json["error"]["message"]
        config = h.settings.data_dir / "config.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text("features: {workflow_import_export: false}\n")
        off = h.client.get("/api/v1/workflows/acme/inbox/export", headers=read)
        assert off.status_code == 403 and "feature flag workflow_import_export" in off.json["error"]["message"]


def test_interactive_import_asks_for_each_open_binding(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    out.write_text(json.dumps(exported(repo, "--with-dependencies")))
    base = ["--repo", str(repo), "--data-dir", str(repo.parent / "data"), "--db", f"sqlite:///{repo.parent / 'w.db'}"]
    # mailbox: 1) mb_prod 2) mb_same (mb_old is not active); user: 1) u_pat; channel: 1) CP1; object type: 1) ot_42
    result = CliRunner().invoke(cli, [*base, "import", str(out), "--account", "prod", "--interactive"],
                                input="1\n1\n1\n1\n", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1) mailbox:mb_prod  Support" in result.stderr and "mailbox:mb_old" not in result.stderr
    written = (repo / "workflows.d/prod/notify.yaml").read_text()
    assert "mailbox:mb_prod" in written and "user:u_pat" in written


def test_match_by_name_leaves_an_ambiguous_binding_open() -> None:
    entries = {e.ref: e for e in (DirectoryEntry("channel", "C1", "oncall"), DirectoryEntry("channel", "C2", "oncall"))}
    doc = {"format": document.FORMAT, "workflows": [{"apiVersion": "workflows/v1", "kind": "Workflow",
                                                     "metadata": {"name": "w"}, "spec": {"actions": []}}],
           "bindings": [{"name": "channel-1", "kind": "channel", "hint": "oncall", "used_by": []}]}
    plan = document.plan(doc, "acme", entries=entries, existing={}, given={}, match_names=True)
    assert not plan.ok
    assert plan.resolutions[0].problem == ("'oncall' matches channel:C1, channel:C2; choose one with "
                                           "--bind channel-1=...")
