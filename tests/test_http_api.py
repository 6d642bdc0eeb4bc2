"""The JSON API through Flask's test client: tokens and permissions, every endpoint and its statuses."""

# mypy: disable-error-code=index
# (werkzeug types TestResponse.json as Any | None; these endpoints always answer JSON)

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from httpkit import Http, http_kit
from sqlalchemy import create_engine, update

from controller.security import secrets
from controller.store import Store, loops, views
from controller.store.tables import sources
from webhooks import create_app

API = "/api/v1"


@pytest.fixture
def http(tmp_path: Path, store_url: str) -> Iterator[Http]:
    with http_kit(tmp_path, store_url) as h:
        yield h


@pytest.fixture
def admin(http: Http) -> dict[str, str]:
    return http.auth(http.token("admin"))


def test_the_api_needs_a_valid_token(http: Http) -> None:
    """No token, an unknown or revoked one, or one of a deactivated user: 401 with a Bearer challenge."""
    from controller.security import tokens
    from controller.store import directory

    assert http.client.get(f"{API}/workflows").status_code == 401
    answer = http.client.get(f"{API}/workflows", headers={"Authorization": "Bearer wfc_nope"})
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == 'Bearer realm="wfctl"'
    assert answer.json["error"]["code"] == "unauthorized"
    assert http.client.get(f"{API}/workflows", headers={"Authorization": "Basic abc"}).status_code == 401
    token = http.token("workflow.read", name="ci")
    assert http.client.get(f"{API}/workflows", headers=http.auth(token)).status_code == 200
    with http.kit.store.tx() as conn:
        tokens.revoke(conn, "acme", "ci", http.kit.clock.now())
    revoked = http.client.get(f"{API}/workflows", headers=http.auth(token))
    assert revoked.status_code == 401 and "revoked" in revoked.json["error"]["message"]
    other = http.token("workflow.read")
    with http.kit.store.tx() as conn:
        directory.set_status(conn, "acme", "user:u_alice", "deactivated", http.kit.clock.now())
    assert http.client.get(f"{API}/workflows", headers=http.auth(other)).status_code == 401
    with http.kit.store.read() as conn:
        stored = [row.token_hash for row in conn.exec_driver_sql("SELECT token_hash FROM api_tokens")]
    assert token not in stored and tokens.hash_token(token) in stored  # only the hash is kept


def test_a_missing_permission_is_403_naming_it(http: Http) -> None:
    """Each endpoint names the permission it needs; admin has them all, in its own account."""
    writer = http.auth(http.token("records.write"))
    answer = http.client.get(f"{API}/workflows", headers=writer)
    assert answer.status_code == 403
    assert answer.json["error"]["code"] == "forbidden" and "workflow.read" in answer.json["error"]["message"]
    needs = {
        ("POST", f"{API}/workflows/acme/greet/run"): "workflow.run_manual",
        ("POST", f"{API}/workflows/acme/greet/dry-run"): "workflow.dry_run",
        ("POST", f"{API}/executions/1/retry"): "workflow.retry",
        ("POST", f"{API}/executions/1/cancel"): "workflow.manage",
        ("POST", f"{API}/workflows/acme/contact-form/webhook-secret"): "workflow.manage",
        ("PUT", f"{API}/accounts/acme/directory"): "directory.write",
        ("PATCH", f"{API}/accounts/acme/directory/user/u_alice"): "directory.write",
    }
    for (method, path), permission in needs.items():
        answer = http.client.open(path, method=method, json={}, headers=writer)
        assert answer.status_code == 403, path
        assert permission in answer.json["error"]["message"], path
    reader = http.auth(http.token("workflow.read"))
    assert http.client.post(f"{API}/accounts/acme/records/ticket", json={}, headers=reader).status_code == 403
    assert http.client.post(f"{API}/accounts/acme/events", json={}, headers=reader).status_code == 403
    assert http.client.post(f"{API}/accounts/acme/mail", json={}, headers=reader).status_code == 403


def test_a_token_can_do_no_more_than_its_user_holds_in_the_directory(http: Http) -> None:
    """Permissions have one source: the directory caps every token, on every request, at once."""
    bob = "users:\n  - {id: u_alice, email: alice@acme.test, permissions: [admin]}\n  - {id: u_bob, email: bob@acme.test%s}\n"
    http.kit.directory(bob % "")
    run = f"{API}/workflows/acme/contact-form/run"
    runner = http.auth(http.token("workflow.run_manual", "workflow.read", user="u_bob"))
    refused = http.client.post(run, json={"payload": {"name": "Bo"}}, headers=runner)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "forbidden"
    assert "user:u_bob does not hold the permission workflow.run_manual" in refused.json["error"]["message"]
    assert http.client.get(f"{API}/workflows", headers=runner).status_code == 403
    with http.kit.store.read() as conn:
        before = conn.exec_driver_sql("SELECT count(*) FROM executions").scalar()
    http.kit.directory(bob % ", permissions: [workflow.run_manual]")  # granted in the directory: works now
    ran = http.client.post(run, json={"payload": {"name": "Bo"}}, headers=runner)
    assert ran.status_code == 202, ran.json
    assert http.client.get(f"{API}/workflows", headers=runner).status_code == 403  # read still not held
    http.kit.directory(bob % ", permissions: [admin]")  # an admin user: the token's own grant is the cap
    assert http.client.get(f"{API}/workflows", headers=runner).status_code == 200
    assert http.client.patch(f"{API}/accounts/acme/directory/user/u_alice", json={"status": "deactivated"},
                             headers=runner).status_code == 403  # never more than the token was granted
    http.kit.directory(bob % ", permissions: []")  # taken away: refused on the very next request
    assert http.client.post(run, json={"payload": {"name": "Bo"}}, headers=runner).status_code == 403
    with http.kit.store.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM executions").scalar() == before + 1
    admin_of_reader = http.auth(http.token("admin", user="u_bob"))
    http.kit.directory(bob % ", permissions: [workflow.read]")  # an admin token of a reader can only read
    assert http.client.get(f"{API}/workflows", headers=admin_of_reader).status_code == 200
    assert http.client.post(run, json={"payload": {"name": "Bo"}}, headers=admin_of_reader).status_code == 403


def test_tokens_of_another_account_see_nothing_of_this_one(http: Http, admin: dict[str, str]) -> None:
    """A globex admin token lists only globex, and every acme path answers 404 as if it did not exist."""
    acme_execution = http.hook("acme/contact-form", {"name": "Ada"}).json["execution_id"]
    globex_execution = http.hook("globex/intake", {"name": "Gil"}).json["execution_id"]
    other = http.auth(http.token("admin", account="globex", user="u_gil"))
    listed = http.client.get(f"{API}/workflows", headers=other).json["workflows"]
    assert [w["id"] for w in listed] == ["globex/intake"]
    assert [e["id"] for e in http.client.get(f"{API}/executions", headers=other).json["executions"]] == [
        globex_execution]
    assert http.client.get(f"{API}/executions/{globex_execution}", headers=other).status_code == 200
    attempts = [
        ("GET", f"{API}/workflows?account=acme"), ("GET", f"{API}/workflows/acme/contact-form"),
        ("GET", f"{API}/workflows/acme/contact-form/versions"), ("GET", f"{API}/workflows/acme/contact-form/audit"),
        ("GET", f"{API}/workflows/acme/contact-form/webhook-secret"),
        ("POST", f"{API}/workflows/acme/contact-form/webhook-secret"),
        ("POST", f"{API}/workflows/acme/greet/run"), ("POST", f"{API}/workflows/acme/greet/dry-run"),
        ("GET", f"{API}/executions?workflow=acme/contact-form"), ("GET", f"{API}/executions/{acme_execution}"),
        ("POST", f"{API}/executions/{acme_execution}/retry"), ("POST", f"{API}/executions/{acme_execution}/cancel"),
        ("GET", f"{API}/accounts/acme/records/ticket/1/workflows"), ("POST", f"{API}/accounts/acme/records/ticket"),
        ("PATCH", f"{API}/accounts/acme/records/ticket/1"), ("DELETE", f"{API}/accounts/acme/records/ticket/1"),
        ("POST", f"{API}/accounts/acme/events"), ("POST", f"{API}/accounts/acme/mail"),
        ("PUT", f"{API}/accounts/acme/directory"), ("PATCH", f"{API}/accounts/acme/directory/user/u_alice"),
    ]
    for method, path in attempts:
        answer = http.client.open(path, method=method, json={"status": "deleted"}, headers=other)
        assert answer.status_code == 404, (method, path)
        assert "contact-form" not in json.dumps(answer.json) or "no workflow" in answer.json["error"]["message"]
    assert http.client.get(f"{API}/executions/{acme_execution}", headers=admin).status_code == 200
    with http.kit.store.read() as conn:  # nothing was changed by the other account
        assert views.execution(conn, acme_execution)["status"] == "queued"
        assert not [e for e in views.audit(conn, "acme/contact-form") if "u_gil" in e["actor"]]


def test_read_api_workflows_versions_audit(http: Http) -> None:
    """Workflows with version, enabled, sync and conditions; versions and audit newest first."""
    reader = http.auth(http.token("workflow.read"))
    listed = http.client.get(f"{API}/workflows", headers=reader).json["workflows"]
    assert [w["id"] for w in listed] == ["acme/contact-form", "acme/greet", "acme/inbox", "acme/limited", "acme/off",
                                         "acme/on-ticket", "acme/slow"]
    assert http.client.get(f"{API}/workflows?account=acme", headers=reader).json["workflows"] == listed
    one: dict[str, Any] = http.client.get(f"{API}/workflows/acme/off", headers=reader).json or {}
    assert {"id", "version", "enabled", "sync", "conditions", "held_executions", "held_execution_ids", "dropped",
            "executions_in_flight", "trigger"} <= set(one)
    assert (one["version"], one["enabled"], one["sync"], one["trigger"]) == (1, False, "Synced", "webhook")
    assert next(c for c in one["conditions"] if c["type"] == "Ready")["status"] == "True"
    versions = http.client.get(f"{API}/workflows/acme/off/versions", headers=reader).json
    assert versions["workflow"] == "acme/off" and [v["version"] for v in versions["versions"]] == [1]
    events = http.client.get(f"{API}/workflows/acme/off/audit", headers=reader).json["events"]
    assert [e["action"] for e in events] == ["secret_created", "created"]
    assert http.client.get(f"{API}/workflows/acme/nope", headers=reader).status_code == 404
    assert http.client.get(f"{API}/workflows/acme/nope/versions", headers=reader).status_code == 404


def test_read_api_executions_filters_pages_and_traces(http: Http) -> None:
    """Executions filter by workflow, status and since, page by next_before, and show the CLI's trace."""
    reader = http.auth(http.token("workflow.read"))
    ids = [http.hook("acme/contact-form", {"name": f"n{n}"}).json["execution_id"] for n in range(3)]
    http.kit.clock.advance(seconds=60)
    later = http.hook("acme/limited", {"x": 1}).json["execution_id"]
    http.kit.engine.run_until_idle()
    page = http.client.get(f"{API}/executions?limit=2", headers=reader).json
    assert [e["id"] for e in page["executions"]] == [later, ids[2]] and page["next_before"] == ids[2]
    rest = http.client.get(f"{API}/executions?limit=2&before={page['next_before']}", headers=reader).json
    assert [e["id"] for e in rest["executions"]] == [ids[1], ids[0]]
    last = http.client.get(f"{API}/executions?limit=2&before={ids[0]}", headers=reader).json
    assert last == {"executions": [], "next_before": None}
    by_workflow = http.client.get(f"{API}/executions?workflow=acme/contact-form", headers=reader).json
    assert [e["id"] for e in by_workflow["executions"]] == ids[::-1]
    failed = http.client.get(f"{API}/executions?status=failed", headers=reader).json["executions"]
    assert [e["id"] for e in failed] == [later]
    since = (http.kit.clock.now()).isoformat()
    assert [e["id"] for e in http.client.get(f"{API}/executions", query_string={"since": since},
                                              headers=reader).json["executions"]] == [later]
    for bad in ("status=nope", "since=yesterday", "limit=0", "limit=x", "before=-1"):
        answer = http.client.get(f"{API}/executions?{bad}", headers=reader)
        assert answer.status_code == 400, bad
    shown = http.client.get(f"{API}/executions/{ids[0]}", headers=reader).json
    with http.kit.store.read() as conn:
        assert shown == json.loads(json.dumps(views.execution(conn, ids[0])))
    assert shown["steps"][0]["action_id"] == "note"
    assert http.client.get(f"{API}/executions/99999", headers=reader).status_code == 404


def test_manual_runs_list_compatible_workflows_and_check_the_record_type(http: Http) -> None:
    """A ticket page offers the manual workflows for tickets; a run on a lead of a ticket workflow is 422."""
    runner = http.auth(http.token("workflow.run_manual"))
    ticket = http.kit.engine and _record(http, "ticket", {"title": "Printer"})
    offered = http.client.get(f"{API}/accounts/acme/records/ticket/{ticket}/workflows", headers=runner).json
    assert [w["id"] for w in offered["workflows"]] == ["acme/greet", "acme/slow"]
    assert offered["workflows"][0] == {"id": "acme/greet", "name": "greet", "version": 1,
                                       "description": "the greet workflow", "entities": ["ticket", "deal"]}
    leads = http.client.get(f"{API}/accounts/acme/records/lead/1/workflows", headers=runner).json["workflows"]
    assert leads == []
    assert http.client.get(f"{API}/accounts/acme/records/spaceship/1/workflows", headers=runner).status_code == 422
    answer = http.client.post(f"{API}/workflows/acme/greet/run", json={"record": {"type": "ticket", "id": ticket}},
                              headers=runner)
    assert answer.status_code == 202
    http.kit.engine.run_until_idle()
    assert http.kit.show(answer.json["execution_id"])["status"] == "succeeded"
    lead = _record(http, "lead", {"name": "Lee"})
    wrong = http.client.post(f"{API}/workflows/acme/greet/run", json={"record": {"type": "lead", "id": lead}},
                             headers=runner)
    assert wrong.status_code == 422 and "ticket, deal" in wrong.json["error"]["message"]
    assert http.client.post(f"{API}/workflows/acme/greet/run", json={}, headers=runner).status_code == 422
    assert http.client.post(f"{API}/workflows/acme/greet/run", json={"record": {"type": "ticket", "id": "404"}},
                            headers=runner).status_code == 404
    assert http.client.post(f"{API}/workflows/acme/greet/run", json={"record": "ticket:1"},
                            headers=runner).status_code == 400
    assert http.client.post(f"{API}/workflows/acme/nope/run", json={}, headers=runner).status_code == 404
    assert http.client.post(f"{API}/workflows/acme/off/run", json={}, headers=runner).status_code == 409
    started = http.client.post(f"{API}/workflows/acme/contact-form/run", json={"payload": {"name": "Run"}},
                               headers=runner)
    assert started.status_code == 202
    assert http.client.post(f"{API}/workflows/acme/contact-form/run", json={"record": {"type": "ticket", "id": 1}},
                            headers=runner).status_code == 422


def _record(http: Http, type_: str, data: dict[str, str]) -> str:
    writer = http.auth(http.token("records.write"))
    answer = http.client.post(f"{API}/accounts/acme/records/{type_}", json=data, headers=writer)
    assert answer.status_code == 201, answer.json
    return str(answer.json["record"]["id"])


def test_dry_run_has_no_side_effects(http: Http) -> None:
    """The applied version runs against a made-up record and writes nothing."""
    token = http.auth(http.token("workflow.dry_run"))
    before = http.executions()
    answer = http.client.post(f"{API}/workflows/acme/greet/dry-run", json={}, headers=token)
    assert answer.status_code == 200, answer.json
    assert answer.json["workflow"] == "acme/greet" and answer.json["dry_run"]["status"] == "succeeded"
    assert http.executions() == before
    assert http.client.post(f"{API}/workflows/acme/nope/dry-run", json={}, headers=token).status_code == 404


def test_record_writes_fire_record_triggers(http: Http) -> None:
    """Create, update and delete in the built-in store answer the record and the executions they started."""
    writer = http.auth(http.token("records.write"))
    made = http.client.post(f"{API}/accounts/acme/records/ticket", json={"title": "Sink"}, headers=writer)
    assert made.status_code == 201
    record_id, started = made.json["record"]["id"], made.json["executions"]
    assert made.json["record"]["title"] == "Sink" and len(started) == 1
    changed = http.client.patch(f"{API}/accounts/acme/records/ticket/{record_id}", json={"title": "Sunk"},
                                headers=writer)
    assert changed.status_code == 200 and changed.json["record"]["title"] == "Sunk"
    assert len(changed.json["executions"]) == 1
    gone = http.client.delete(f"{API}/accounts/acme/records/ticket/{record_id}", headers=writer)
    assert gone.status_code == 200 and len(gone.json["executions"]) == 1
    http.kit.engine.run_until_idle()
    assert {http.kit.show(i)["trigger"]["event"] for i in started + changed.json["executions"]} == {"created",
                                                                                                   "updated"}
    assert http.client.patch(f"{API}/accounts/acme/records/ticket/{record_id}", json={},
                             headers=writer).status_code == 404
    assert http.client.post(f"{API}/accounts/acme/records/ticket", json=[1], headers=writer).status_code == 400
    assert http.client.post(f"{API}/accounts/acme/records/ticket", data="{", headers=writer).status_code == 400
    assert http.client.post(f"{API}/accounts/acme/records/ticket", headers=writer).status_code == 400
    assert http.client.post(f"{API}/accounts/acme/records/ticket", json={"id": 3}, headers=writer).status_code == 422
    assert http.client.post(f"{API}/accounts/acme/records/spaceship", json={}, headers=writer).status_code == 422


def test_events_from_a_host_fire_record_triggers(http: Http) -> None:
    """A host that keeps its own records posts events; the record is the trigger's record."""
    writer = http.auth(http.token("records.write"))
    event = {"entity": "ticket", "id": 77, "event": "updated", "record": {"title": "Host ticket"}}
    answer = http.client.post(f"{API}/accounts/acme/events", json=event, headers=writer)
    assert answer.status_code == 202 and len(answer.json["executions"]) == 1
    http.kit.engine.run_until_idle()
    shown = http.kit.show(answer.json["executions"][0])
    assert shown["trigger"]["record"] == {"title": "Host ticket", "id": "77", "type": "ticket"}
    assert http.kit.steps(shown["id"])["seen"]["output"] == {"title": "Host ticket"}
    quiet = http.client.post(f"{API}/accounts/acme/events", json={**event, "entity": "lead"}, headers=writer)
    assert quiet.status_code == 202 and quiet.json["executions"] == []
    for bad, status in (({**event, "event": "exploded"}, 422), ({**event, "entity": "spaceship"}, 422),
                        ({"entity": "ticket", "event": "created"}, 400), ({**event, "record": [1]}, 400),
                        ({**event, "id": True}, 400)):
        assert http.client.post(f"{API}/accounts/acme/events", json=bad, headers=writer).status_code == status, bad


def _message(subject: str) -> str:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "carol@example.com", "support@acme.test", subject
    message.set_content("Hello")
    return message.as_string()


def test_inbound_mail_fires_email_triggers(http: Http) -> None:
    """Mail as JSON or as message/rfc822 reaches the workflows listening on the mailbox."""
    writer = http.auth(http.token("records.write"))
    answer = http.client.post(f"{API}/accounts/acme/mail", headers=writer,
                              json={"mailbox": "mailbox:mb_support", "message": _message("Refund")})
    assert answer.status_code == 202 and len(answer.json["executions"]) == 1
    raw = http.client.post(f"{API}/accounts/acme/mail?mailbox=mailbox:mb_support", data=_message("Again"),
                           headers={**writer, "Content-Type": "message/rfc822"})
    assert raw.status_code == 202 and len(raw.json["executions"]) == 1
    http.kit.engine.run_until_idle()
    assert http.kit.show(raw.json["executions"][0])["trigger"]["subject"] == "Again"
    assert http.client.post(f"{API}/accounts/acme/mail", headers=writer,
                            json={"mailbox": "mailbox:mb_support", "message": "not mail"}).status_code == 422
    assert http.client.post(f"{API}/accounts/acme/mail", headers=writer,
                            json={"mailbox": "mb_support", "message": _message("x")}).status_code == 422
    assert http.client.post(f"{API}/accounts/acme/mail", headers=writer, json={"mailbox": 1}).status_code == 400
    assert http.client.post(f"{API}/accounts/acme/mail", data="x", headers={
        **writer, "Content-Type": "message/rfc822"}).status_code == 400


def test_directory_replace_and_status_change(http: Http) -> None:
    """PUT replaces the account's directory; PATCH changes one entry's status; bad input is located."""
    writer = http.auth(http.token("directory.write"))
    directory = {"users": [{"id": "u_alice", "name": "Alice", "email": "alice@acme.test",
                            "permissions": ["directory.write"]},
                           {"id": "u_bob", "name": "Bob", "email": "bob@acme.test"}],
                 "mailboxes": [{"id": "mb_support", "name": "Support", "address": "support@acme.test",
                                "kind": "outbox"}]}
    answer = http.client.put(f"{API}/accounts/acme/directory", json=directory, headers=writer)
    assert answer.status_code == 200
    assert answer.json == {"account": "acme", "counts": {"user": 2, "mailbox": 1, "channel": 0, "object_type": 0},
                           "suspended": []}
    bad = http.client.put(f"{API}/accounts/acme/directory", json={"users": [{"id": "u x"}]}, headers=writer)
    assert bad.status_code == 422 and re.match(r"request\.json:\d+:\d+: ", bad.json["error"]["message"])
    assert http.client.put(f"{API}/accounts/acme/directory", data=b"\xff", headers=writer).status_code == 400
    changed = http.client.patch(f"{API}/accounts/acme/directory/user/u_bob", json={"status": "deactivated"},
                                headers=writer)
    assert changed.status_code == 200
    assert changed.json == {"ref": "user:u_bob", "kind": "user", "id": "u_bob", "name": "Bob", "status": "deactivated",
                            "suspended": []}
    assert http.client.patch(f"{API}/accounts/acme/directory/user/u_nobody", json={"status": "active"},
                             headers=writer).status_code == 404
    assert http.client.patch(f"{API}/accounts/acme/directory/user/u_bob", json={"status": "sleepy"},
                             headers=writer).status_code == 422
    assert http.client.patch(f"{API}/accounts/acme/directory/user/u_bob", json={"name": "Robert"},
                             headers=writer).status_code == 422


@pytest.mark.parametrize("huge", [str(2**31), str(2**63), str(2**64 + 1), "9" * 40])
def test_ids_beyond_the_store_are_404_or_400_never_500(http: Http, admin: dict[str, str], huge: str) -> None:
    """An execution or record id no column can hold names nothing: 404 (400 or 422 for a query parameter)."""
    for method, path in [("GET", f"{API}/executions/{huge}"), ("POST", f"{API}/executions/{huge}/retry"),
                         ("POST", f"{API}/executions/{huge}/cancel"), ("GET", f"/ui/acme/executions/{huge}"),
                         ("DELETE", f"{API}/accounts/acme/records/ticket/{huge}")]:
        answer = http.client.open(path, method=method, headers=admin)
        assert answer.status_code == 404, (method, path, answer.status_code)
    for query in (f"before={huge}", f"limit={huge}"):
        assert http.client.get(f"{API}/executions?{query}", headers=admin).status_code == 400
    assert http.client.get(f"{API}/accounts/acme/metrics?min_executions={huge}", headers=admin).status_code == 422


def test_retry_and_cancel(http: Http) -> None:
    """Retry makes a linked execution of a failed one; cancel terminates; both refuse the wrong state with 409."""
    token = http.auth(http.token("workflow.retry", "workflow.manage", "workflow.run_manual"))
    failed = http.hook("acme/limited", {"x": 1}).json["execution_id"]
    http.kit.engine.run_until_idle()
    retried = http.client.post(f"{API}/executions/{failed}/retry", json={"latest": True}, headers=token)
    assert retried.status_code == 202 and retried.json["retry_of"] == failed
    assert http.kit.show(retried.json["execution_id"])["retry_of"] == failed
    assert http.client.post(f"{API}/executions/{failed}/retry", json={"latest": "yes"}, headers=token).status_code == 400
    ticket = _record(http, "ticket", {"title": "t"})
    waiting = http.client.post(f"{API}/workflows/acme/slow/run", json={"record": {"type": "ticket", "id": ticket}},
                               headers=token).json["execution_id"]
    http.kit.engine.run_until_idle()
    assert http.client.post(f"{API}/executions/{waiting}/retry", headers=token).status_code == 409
    cancelled = http.client.post(f"{API}/executions/{waiting}/cancel", headers=token)
    assert cancelled.status_code == 202 and cancelled.json == {"execution_id": waiting, "status": "terminated"}
    assert http.client.post(f"{API}/executions/{waiting}/cancel", headers=token).status_code == 409
    assert http.client.post(f"{API}/executions/{waiting}/retry", headers=token).status_code == 202
    assert http.client.post(f"{API}/executions/424242/retry", headers=token).status_code == 404


def test_a_retry_respects_the_rate_limit_budget(http: Http) -> None:
    """With the window full, a retry is 429 and counted as a drop; once the window moves on, it runs."""
    token = http.auth(http.token("workflow.retry", "workflow.read"))
    first = [http.hook("acme/limited", {"x": n}).json["execution_id"] for n in range(2)]
    http.kit.engine.run_until_idle()
    refused = http.client.post(f"{API}/executions/{first[0]}/retry", headers=token)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) == 60
    assert http.client.get(f"{API}/workflows/acme/limited", headers=token).json["dropped"] == 1
    http.kit.clock.advance(seconds=61)
    assert http.client.post(f"{API}/executions/{first[0]}/retry", headers=token).status_code == 202


def test_errors_are_json_never_html_or_tracebacks(http: Http, admin: dict[str, str]) -> None:
    """Unknown paths, wrong methods and crashes answer {"error": {"code", "message"}}."""
    missing = http.client.get("/nope")
    assert missing.status_code == 404 and missing.is_json and missing.json["error"]["code"] == "not_found"
    wrong = http.client.get("/hooks/acme/contact-form")
    assert wrong.status_code == 405 and wrong.json["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]
    app = create_app(http.settings, http.kit.store, http.kit.engine, environ={secrets.KEY_ENV: _key()})

    def crash() -> str:
        raise RuntimeError("secret internals")

    app.add_url_rule("/crash", view_func=crash)
    crashed = app.test_client().get("/crash")
    assert crashed.status_code == 500 and crashed.is_json
    assert crashed.json["error"]["code"] == "internal" and "secret internals" not in crashed.get_data(as_text=True)
    assert "Traceback" not in crashed.get_data(as_text=True)


def _key() -> str:
    return Fernet.generate_key().decode()


def test_health_and_readiness(http: Http, tmp_path: Path) -> None:
    """/healthz answers while the process runs; /readyz is 503 when the store is gone, a loop or reconcile
    stalled, and its checks say which."""
    assert http.client.get("/healthz").json == {"status": "ok"}
    ready = http.client.get("/readyz")
    assert ready.status_code == 200 and ready.json["status"] == "ready"
    assert ready.json["checks"] == {"store": "ok", "reconcile": "ok", "loops": "ok"}
    now = http.kit.clock.now()  # the app's clock
    failing = {"name": "scheduler", "interval_seconds": 5, "failures": 2, "error": "OperationalError: locked",
               "last_ok_at": now - timedelta(seconds=9), "failing_since": now - timedelta(seconds=8)}
    with http.kit.store.tx() as conn:
        loops.report(conn, "vm:1:test", [failing], now)
    loop_stalled = http.client.get("/readyz")
    assert loop_stalled.status_code == 503
    assert loop_stalled.json["checks"] == {"store": "ok", "reconcile": "ok", "loops": "stalled"}
    assert loop_stalled.json["error"]["message"].startswith("the scheduler loop has been failing since")
    with http.kit.store.tx() as conn:
        loops.report(conn, "vm:1:test", [], now)
    with http.kit.store.tx() as conn:
        conn.execute(update(sources).values(conditions=[
            {"type": "Ready", "status": "False", "reason": "FetchFailed", "message": "no route", "lastTransitionTime": ""},
            {"type": "Stalled", "status": "True", "reason": "FetchFailed", "message": "no route",
             "lastTransitionTime": ""}]))
    stalled = http.client.get("/readyz")
    assert stalled.status_code == 503 and "FetchFailed" in stalled.json["error"]["message"]
    assert stalled.json["checks"] == {"store": "ok", "reconcile": "stalled", "loops": "ok"}
    gone = Store(create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    app = create_app(http.settings, gone, http.kit.engine, environ={secrets.KEY_ENV: _key()})
    unreachable = app.test_client().get("/readyz")
    assert unreachable.status_code == 503 and unreachable.json["checks"]["store"] == "unreachable"
    assert app.test_client().get("/healthz").status_code == 200


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def test_openapi_document_matches_the_url_map(http: Http) -> None:
    """Every route is documented with its methods, every documented operation is a route, permissions agree."""
    document = http.client.get(f"{API}/openapi.json").json
    assert document["openapi"].startswith("3.1")
    routes = {(_openapi_path(rule.rule), method.lower()): rule.endpoint for rule in http.app.url_map.iter_rules()
              for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
              if not rule.rule.startswith("/ui/")}  # the console's pages are HTML, not the API
    documented = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert documented == set(routes)
    for (path, method), endpoint in routes.items():
        operation = document["paths"][path][method]
        needed = getattr(http.app.view_functions[endpoint], "permissions", None)
        assert operation.get("x-permissions") == (list(needed) if needed else None), (path, method)
        for parameter in re.findall(r"{(\w+)}", path):
            assert parameter in {p["name"] for p in operation["parameters"] if p["in"] == "path"}, (path, parameter)


def test_from_environ_builds_the_app_like_wfctl(http: Http) -> None:
    """The gunicorn entry point reads WFC_* like the CLI and serves the same store."""
    from webhooks import from_environ

    app = from_environ({"WFC_REPO": http.settings.repo, "WFC_DATA_DIR": str(http.settings.data_dir),
                        "WFC_DATABASE_URL": http.settings.db_url, secrets.KEY_ENV: _key()})
    token = http.auth(http.token("workflow.read"))
    try:
        listed = app.test_client().get(f"{API}/workflows", headers=token)
        assert listed.status_code == 200 and len(listed.json["workflows"]) == 7
    finally:
        app.extensions["wfctl"].store.close()


def test_bodies_nested_to_crash_a_parser_are_400(http: Http) -> None:
    """Deeply nested JSON for the directory and deeply nested MIME for mail are refused, not crashed on."""
    token = http.auth(http.token("admin"))
    deep = http.client.put(f"{API}/accounts/acme/directory", data=b"[" * 100_000, headers=token)
    assert deep.status_code == 400 and "nests" in deep.json["error"]["message"]
    yaml = http.client.put(f"{API}/accounts/acme/directory", data=b"users: [", headers=token)
    assert yaml.status_code == 400 and "not valid JSON" in yaml.json["error"]["message"]
    message = "From: a@example.com\nSubject: deep\n"
    for i in range(2000):
        message += f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n'
    mail = http.client.post(f"{API}/accounts/acme/mail", json={"mailbox": "mailbox:mb_support", "message": message},
                            headers=token)
    assert mail.status_code == 400 and "MIME" in mail.json["error"]["message"]


def test_what_the_openapi_document_says_is_invalid_the_server_refuses(http: Http, admin: dict[str, str]) -> None:
    """Found by schemathesis: a JSON null is not a record, a flag is true or false, an event names its record."""
    for method, path in [("POST", f"{API}/accounts/acme/records/ticket"), ("PATCH", f"{API}/accounts/acme/records/ticket/1")]:
        answer = http.client.open(path, method=method, data=b"null", headers={**admin, "Content-Type": "application/json"})
        assert answer.status_code == 400 and "must be a JSON object" in answer.json["error"]["message"], path
    for path in (f"{API}/alerts?open=null", f"{API}/workflows/acme/contact-form/export?with_dependencies=maybe"):
        answer = http.client.get(path, headers=admin)
        assert answer.status_code == 400 and "must be true or false" in answer.json["error"]["message"], path
    assert http.client.get(f"{API}/alerts?open=false", headers=admin).status_code == 200
    empty = http.client.post(f"{API}/accounts/acme/events", json={"entity": "ticket", "id": " ", "event": "created"},
                             headers=admin)
    assert empty.status_code == 400 and "non-empty" in empty.json["error"]["message"]
    assert http.client.post(f"{API}/workflows/acme/contact-form/run", headers=admin).status_code == 202  # no body
