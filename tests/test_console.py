"""The web console (/ui/) through Flask's test client: sign-in, pages, permissions, CSRF, actions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpkit import WF, Http, http_kit, wf

from controller.security import tokens


@pytest.fixture
def http(tmp_path: Path, store_url: str) -> Iterator[Http]:
    with http_kit(tmp_path, store_url) as h:
        yield h


def sign_in(http: Http, *permissions: str) -> str:
    bearer = http.token(*permissions)
    answer = http.client.post("/ui/sign-in", data={"token": bearer})
    assert answer.status_code == 302, answer.text
    return bearer


def csrf(http: Http, page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', http.client.get(page).text)
    assert found, "no CSRF field on " + page
    return found.group(1)


def test_sign_in_sets_a_strict_http_only_cookie_and_a_bad_token_is_refused(http: Http) -> None:
    assert http.client.get("/ui/").headers["Location"].startswith("/ui/sign-in")
    refused = http.client.post("/ui/sign-in", data={"token": "nope"})
    assert refused.status_code == 401 and "the bearer token is not valid" in refused.text
    bearer = http.token("workflow.read")
    answer = http.client.post("/ui/sign-in?next=/ui/accounts/acme/workflows/greet", data={"token": bearer})
    assert answer.status_code == 302 and answer.headers["Location"] == "/ui/accounts/acme/workflows/greet"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and bearer not in cookie
    assert "acme/greet" in http.client.get("/ui/accounts/acme/workflows/greet").text
    assert http.client.post("/ui/sign-in?next=https://evil.test/", data={"token": bearer}).headers[
        "Location"] == "/ui/accounts/acme/workflows"  # never off-site
    signed_out = http.client.post("/ui/sign-out", data={"csrf": csrf(http, "/ui/accounts/acme/workflows")})
    assert signed_out.status_code == 302
    assert http.client.get("/ui/accounts/acme/workflows").status_code == 302


def test_a_revoked_token_is_signed_out_at_once(http: Http) -> None:
    sign_in(http, "workflow.read")
    assert http.client.get("/ui/accounts/acme/workflows").status_code == 200
    with http.kit.store.tx() as conn:
        for row in tokens.list_tokens(conn, "acme"):
            tokens.revoke(conn, "acme", str(row["id"]), http.kit.clock.now())
    assert http.client.get("/ui/accounts/acme/workflows").headers["Location"].startswith("/ui/sign-in")


def test_workflows_list_filters_and_links(http: Http) -> None:
    http.kit.run("acme/greet")
    sign_in(http, "workflow.read")
    page = http.client.get("/ui/accounts/acme/workflows").text
    for key in ("acme/greet", "acme/contact-form", "acme/inbox"):
        assert key in page
    assert "globex/intake" not in page  # another account's
    assert 'href="/ui/executions/1"' in page and "100.0%" in page
    assert "aria-label=\"executions per day over 30 days: 1 in all\"" in page
    only = http.client.get("/ui/accounts/acme/workflows?q=greet").text
    assert "acme/greet" in only and "acme/inbox" not in only
    assert http.client.get("/ui/accounts/globex/workflows").status_code == 404


def test_versions_diff_audit_metrics_and_executions_tabs(http: Http) -> None:
    http.kit.deploy({WF.format("acme", "greet"): wf("greet", "{type: manual, entities: [ticket, deal]}",
                                                    "    - {id: note, type: set, vars: {who: changed}}\n")},
                    "change greet")
    http.kit.run("acme/greet")
    sign_in(http, "workflow.read")
    base = "/ui/accounts/acme/workflows/greet"
    versions = http.client.get(base).text
    assert "change greet" in versions and "v2" in versions
    diff = http.client.get(base + "?tab=versions&a=1&b=2").text
    assert 'class="changed"' in diff and "who: changed" in diff
    assert "updated" in http.client.get(base + "?tab=audit").text
    metrics = http.client.get(base + "?tab=metrics&window=7d").text
    assert "Success rate" in metrics and "By version" in metrics
    assert 'aria-label="executions per day over 30 days' in metrics and ": 1 executions, 0 failed</title>" in metrics
    assert "<code>spec.actions[note].vars.who</code>" in http.client.get(base + "?tab=audit").text
    http.kit.deploy({WF.format("acme", "greet"): wf("greet", "{type: manual, entities: [ticket, deal]}",
                                                    "    - {id: note, type: set, vars: {who: '{{ nope.x }}'}}\n")},
                    "break greet")
    http.kit.run("acme/greet")
    marked = http.client.get(base + "?tab=metrics").text
    assert "since v3" in marked and "v3 <strong>← changed things</strong>" in marked
    assert 'aria-label="Success rate per day over 30 days"' in marked
    runs = http.client.get(base + "?tab=executions&status=succeeded").text
    assert 'href="/ui/executions/1"' in runs
    assert http.client.get(base + "?tab=nope").status_code == 404


def test_execution_page_retry_and_cancel_follow_permissions_and_csrf(http: Http) -> None:
    failed = http.kit.run("acme/limited", {"type": "webhook", "body": {}})
    sign_in(http, "workflow.read")
    page = http.client.get(f"/ui/executions/{failed}").text
    assert "failed" in page and "Retry" not in page  # no workflow.retry: no button
    forced = http.client.post(f"/ui/executions/{failed}/retry", data={"csrf": csrf(http, f"/ui/executions/{failed}")})
    assert forced.status_code == 403 and "workflow.retry" in forced.text
    http.client.post("/ui/sign-out", data={"csrf": csrf(http, f"/ui/executions/{failed}")})
    sign_in(http, "workflow.read", "workflow.retry")
    page = http.client.get(f"/ui/executions/{failed}").text
    assert "Retry on v1" in page
    assert http.client.post(f"/ui/executions/{failed}/retry").status_code == 400  # no CSRF token
    assert http.client.post(f"/ui/executions/{failed}/retry", data={"csrf": "forged"}).status_code == 400
    retried = http.client.post(f"/ui/executions/{failed}/retry", data={"csrf": csrf(http, f"/ui/executions/{failed}")})
    assert retried.status_code == 302
    new_id = int(retried.headers["Location"].rsplit("/", 1)[1])
    assert f"Retry of <a href=\"/ui/executions/{failed}\">" in http.client.get(f"/ui/executions/{new_id}").text
    cancel = http.client.post(f"/ui/executions/{new_id}/cancel", data={"csrf": csrf(http, f"/ui/executions/{new_id}")})
    assert cancel.status_code == 403  # no workflow.manage
    other = http.kit.run("globex/intake", {"type": "webhook", "body": {}})
    assert http.client.get(f"/ui/executions/{other}").status_code == 404


def test_webhook_tab_rotates_and_shows_the_secret_once(http: Http) -> None:
    sign_in(http, "workflow.read")
    page = "/ui/accounts/acme/workflows/contact-form/webhook"
    shown = http.client.get(page).text
    assert "sha256:" in shown and "Rotate the secret" not in shown  # no workflow.manage: no button
    assert http.client.post(page, data={"csrf": csrf(http, page)}).status_code == 403
    sign_in(http, "workflow.read", "workflow.manage")
    rotated = http.client.post(page, data={"csrf": csrf(http, page)})
    assert rotated.status_code == 200 and rotated.headers["Cache-Control"] == "no-store"
    secret = re.search(r'<code id="secret"[^>]*>([^<]+)</code>', rotated.text).group(1)  # type: ignore[union-attr]
    assert secret.startswith("whsec_") and "X-Wfc-Signature: sha256=$sig" in rotated.text
    assert secret not in http.client.get(page).text  # once
    assert http.hook("acme/contact-form", {"name": "Ada"}, secret=secret).status_code == 202
    assert http.client.get("/ui/accounts/acme/workflows/greet/webhook").status_code == 404


def test_restore_tab_shows_the_plan_and_the_command_never_writing(http: Http) -> None:
    http.kit.deploy({WF.format("acme", "slow"): wf("slow", "{type: manual, entities: [ticket]}",
                                                   "    - {id: nap, type: wait, duration: 2d}\n")}, "longer nap")
    waiting = http.kit.run("acme/slow")
    sign_in(http, "workflow.read")
    page = http.client.get("/ui/accounts/acme/workflows/slow/restore?to=1").text
    assert "A restore would be held now" in page and f'href="/ui/executions/{waiting}"' in page
    assert "wfctl restore acme/slow --to 1" in page and "git revert --no-edit " in page
    assert 'class="changed"' in page and "duration: 1d" in page


def test_dry_run_on_a_record_or_a_pasted_entity(http: Http) -> None:
    from controller.engine.records import RecordService

    ticket = RecordService(http.kit.engine).create("acme", "ticket", {"title": "Printer"})  # starts on-ticket
    before = http.executions()
    sign_in(http, "workflow.read")
    assert http.client.get("/ui/accounts/acme/workflows/greet/dry-run").status_code == 403
    sign_in(http, "workflow.read", "workflow.dry_run")
    page = "/ui/accounts/acme/workflows/on-ticket/dry-run"
    on_record = http.client.post(page, data={"csrf": csrf(http, page), "record_type": "ticket",
                                             "record_id": str(ticket["id"])}).text
    assert "Dry run: succeeded" in on_record and "Printer" in on_record
    pasted = http.client.post(page, data={"csrf": csrf(http, page), "entity": '{"title": "Pasted one"}'}).text
    assert "Dry run: succeeded" in pasted and "Pasted one" in pasted
    bad = http.client.post(page, data={"csrf": csrf(http, page), "entity": "[1]"}).text
    assert "the entity must be a JSON object" in bad
    assert http.executions() == before  # zero side effects


def test_record_page_runs_a_workflow_and_shows_the_timeline(http: Http) -> None:
    from controller.engine.records import RecordService

    ticket = RecordService(http.kit.engine).create("acme", "ticket", {"title": "Printer"})
    sign_in(http, "workflow.read")
    page = f"/ui/accounts/acme/records/ticket/{ticket['id']}"
    shown = http.client.get(page).text
    assert "greet" in shown and ">Run<" not in shown and "acme/on-ticket" in shown  # its timeline
    sign_in(http, "workflow.read", "workflow.run_manual")
    ran = http.client.post(f"{page}/run/greet", data={"csrf": csrf(http, page)})
    assert ran.status_code == 302 and ran.headers["Location"].startswith("/ui/executions/")


def test_account_overview_with_worst_performers_alerts_and_resume(http: Http) -> None:
    from controller.config import Config
    from controller.safeguards import suspension

    for i in range(12):
        http.hook("acme/limited", {"n": i})  # fails; the 3rd onwards are dropped
    http.kit.engine.run_until_idle()
    with http.kit.store.tx() as conn:
        suspension.set_status(conn, Config(), "acme", "mailbox:mb_support", "deactivated", http.kit.clock.now())
    sign_in(http, "workflow.read", "workflow.manage")
    page = http.client.get("/ui/accounts/acme").text
    assert "acme/limited" in page and "Most dropped" in page
    assert "suspended · acme/inbox" in page and "Resume" in page
    refused = http.client.post("/ui/accounts/acme/workflows/inbox/resume", data={"csrf": csrf(http, "/ui/accounts/acme")})
    assert refused.status_code == 409 and "mailbox:mb_support is deactivated" in refused.text
    with http.kit.store.tx() as conn:
        suspension.set_status(conn, Config(), "acme", "mailbox:mb_support", "active", http.kit.clock.now())
    resumed = http.client.post("/ui/accounts/acme/workflows/inbox/resume", data={"csrf": csrf(http, "/ui/accounts/acme")})
    assert resumed.status_code == 302
    assert "Suspended" not in http.client.get("/ui/accounts/acme").text


def test_every_page_needs_workflow_read(http: Http) -> None:
    sign_in(http, "records.write")
    for page in ("/ui/accounts/acme/workflows", "/ui/accounts/acme/workflows/greet", "/ui/accounts/acme",
                 "/ui/accounts/acme/workflows/greet/restore", "/ui/accounts/acme/records/ticket/1",
                 "/ui/accounts/acme/workflows/contact-form/webhook"):
        answer = http.client.get(page)
        assert answer.status_code == 403 and "workflow.read" in answer.text, page
    sign_in(http, "workflow.read")
    assert 'aria-label="executions per day of the account over 30 days' in http.client.get("/ui/accounts/acme").text
