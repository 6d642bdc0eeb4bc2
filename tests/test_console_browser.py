"""The web console in a real browser: Debian's chromium driven by Playwright against `wfctl serve`.

One site for the module: a git repository whose acme/greet has two versions, a failed execution of
acme/broken, a ticket record, and an admin token; `wfctl serve` runs on 127.0.0.1. Every test signs in
on its own browser context and saves a screenshot of each page it checks under tests/artifacts/.
Without /usr/bin/chromium or the playwright package every test skips and says which is missing.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from browserkit import ACCOUNT, Site, browser, make_site, new_page, require_browser, serve, shoot

from controller.security.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError:  # every test skips first, with browserkit's reason
    pass

WF = "workflows.d/acme/{}.yaml"


def wf(name: str, trigger: str, actions: str) -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n"
            f"  trigger: {trigger}\n  actions:\n{actions}")


MANUAL = "{type: manual, entities: [ticket]}"
WORKFLOWS = {
    WF.format("greet"): wf("greet", MANUAL, "    - {id: hello, type: set, vars: {who: world}}\n"),
    WF.format("broken"): wf("broken", MANUAL, "    - {id: boom, type: set, vars: {x: '{{ trigger.nothing.here }}'}}\n"),
    WF.format("triage"): wf("triage", MANUAL,
                            "    - {id: look, type: set, vars: {title: '{{ record.title if record else \"none\" }}'}}\n"),
    WF.format("contact-form"): wf("contact-form", "{type: webhook}",
                                  "    - {id: keep, type: set, vars: {name: '{{ trigger.body.name }}'}}\n"),
}
GREET_V2 = wf("greet", MANUAL, "    - {id: hello, type: set, vars: {who: everyone}}\n")


@dataclass(frozen=True)
class Console:
    site: Site
    url: str
    token: str
    failed: int  # a failed execution of acme/broken (v1)
    ticket: str  # the id of a stored ticket record


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    require_browser()  # before the setup: a machine without a browser skips at once
    site = make_site(tmp_path_factory.mktemp("console"), WORKFLOWS)
    site.commit({WF.format("greet"): GREET_V2}, "greet everyone")
    site.ok("sync")
    run = site.wfctl("run", "acme/broken", "--wait", "--json")
    assert run.exit_code == 1, run.output  # the step fails, as intended
    failed = json.loads(run.stdout)["id"]
    ticket = json.loads(site.ok("records", "create", "ticket", "--account", ACCOUNT,
                                "--data", json.dumps({"title": "Printer on fire"})))["record"]["id"]
    token = site.token("admin")
    with serve(site) as url:
        yield Console(site=site, url=url, token=token, failed=failed, ticket=ticket)


@pytest.fixture(scope="module")
def chromium(console: Console) -> Iterator[Browser]:
    with browser() as launched:
        yield launched


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    opened = new_page(chromium)
    yield opened
    opened.context.close()


def sign_in(page: Page, console: Console) -> None:
    page.goto(console.url + "/ui/sign-in")
    page.get_by_label("API token").fill(console.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(console.url + f"/ui/accounts/{ACCOUNT}/workflows")


def test_sign_in_with_a_token_lands_on_the_workflows(page: Page, console: Console,
                                                     request: pytest.FixtureRequest) -> None:
    """A wrong token is refused on the page; the admin token lands on the account's workflows."""
    page.goto(console.url + "/ui/")
    expect(page).to_have_url(re.compile(r"/ui/sign-in"))
    page.get_by_label("API token").fill("wfc_not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    shoot(page, request, "refused")

    page.get_by_label("API token").fill(console.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(console.url + "/ui/accounts/acme/workflows")
    expect(page.get_by_role("heading", name="Workflows of acme")).to_be_visible()
    for key in ("acme/greet", "acme/broken", "acme/triage", "acme/contact-form"):
        expect(page.get_by_role("link", name=key, exact=True)).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="acme/greet")).to_contain_text("v2")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    shoot(page, request, "workflows")


def test_open_a_workflow_and_diff_two_versions(page: Page, console: Console, request: pytest.FixtureRequest) -> None:
    """From the list to acme/greet's Versions tab; Diff of v1 and v2 shows the changed line side by side."""
    sign_in(page, console)
    page.get_by_role("link", name="acme/greet", exact=True).click()
    expect(page.get_by_role("heading", name="acme/greet")).to_be_visible()
    expect(page.get_by_role("link", name="Versions")).to_have_attribute("aria-current", "page")
    page.get_by_label("diff from v1").check()
    page.get_by_label("diff to v2").check()
    shoot(page, request, "versions")
    page.get_by_role("button", name="Diff").click()

    expect(page).to_have_url(re.compile(r"[?&]a=1(&|$)"))
    expect(page).to_have_url(re.compile(r"[?&]b=2(&|$)"))
    expect(page.get_by_role("heading", name="Diff v1 → v2")).to_be_visible()
    changed = page.locator("table.diff tr.changed")
    expect(changed).to_have_count(1)
    expect(changed.locator("td").nth(0)).to_have_text("~")
    expect(changed.locator("td").nth(1)).to_contain_text("who: world")
    expect(changed.locator("td").nth(2)).to_contain_text("who: everyone")
    expect(page.locator("table.diff tr.equal").filter(has_text="name: greet")).to_have_count(1)
    shoot(page, request, "diff")


def test_retry_a_failed_execution(page: Page, console: Console, request: pytest.FixtureRequest) -> None:
    """A failed execution shows its error; Retry on v1 opens the new execution, which says what it retries."""
    sign_in(page, console)
    page.goto(f"{console.url}/ui/executions/{console.failed}")
    expect(page.get_by_role("heading", name=f"Execution {console.failed} of acme/broken v1")).to_be_visible()
    expect(page.locator("p.status")).to_have_text(re.compile(r"^failed\b"))
    expect(page.get_by_role("alert")).to_contain_text("step boom")
    shoot(page, request, "failed")

    page.get_by_role("button", name="Retry on v1").click()
    expect(page).not_to_have_url(re.compile(rf"/ui/executions/{console.failed}$"))
    expect(page).to_have_url(re.compile(r"/ui/executions/\d+$"))
    retry = int(page.url.rsplit("/", 1)[1])
    expect(page.get_by_role("heading", name=f"Execution {retry} of acme/broken v1")).to_be_visible()
    expect(page.get_by_text("Retry of")).to_be_visible()
    expect(page.get_by_role("link", name=str(console.failed), exact=True)).to_have_attribute(
        "href", f"/ui/executions/{console.failed}")
    shoot(page, request, "retried")


def test_workflows_page_fits_a_phone(chromium: Browser, console: Console, request: pytest.FixtureRequest) -> None:
    """At 390x844 the workflows page does not scroll sideways: the table scrolls in its own box."""
    phone = new_page(chromium, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        sign_in(phone, console)
        expect(phone.get_by_role("link", name="acme/greet", exact=True)).to_be_visible()
        scroll, inner = phone.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
        shoot(phone, request, "phone")
        # A mobile browser widens its layout viewport (and zooms out) to fit content that is too wide.
        assert inner == 390, f"the layout viewport widened to {inner}px: something on the page is too wide"
        assert scroll <= inner + 1, f"the page is {scroll}px wide in a {inner}px viewport"
        for path in ("/ui/accounts/acme/workflows/greet", "/ui/accounts/acme/workflows/greet?tab=metrics",
                     "/ui/accounts/acme/workflows/triage/dry-run", "/ui/accounts/acme", "/ui/sign-in"):
            phone.goto(console.url + path)
            scroll, inner = phone.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
            assert (inner, scroll <= inner + 1) == (390, True), f"{path}: {scroll}px wide in a {inner}px viewport"
    finally:
        phone.context.close()


def test_rotate_a_webhook_secret_shows_the_new_one_once(page: Page, console: Console,
                                                        request: pytest.FixtureRequest) -> None:
    """The Webhook tab: Rotate shows a new secret once (no-store), which signs a delivery; the old one fails."""
    sign_in(page, console)
    page.get_by_role("link", name="acme/contact-form", exact=True).click()
    page.get_by_role("link", name="Webhook", exact=True).click()
    expect(page).to_have_url(console.url + "/ui/accounts/acme/workflows/contact-form/webhook")
    expect(page.get_by_role("link", name="Webhook", exact=True)).to_have_attribute("aria-current", "page")
    generation = page.get_by_role("row", name=re.compile("^Generation")).get_by_role("cell")
    fingerprint = page.get_by_role("row", name=re.compile("^Fingerprint")).get_by_role("cell")
    expect(generation).to_have_text(re.compile(r"^\d+$"))
    before = (int(generation.inner_text()), fingerprint.inner_text())
    expect(page.get_by_role("heading", name="The new secret")).to_have_count(0)
    shoot(page, request, "webhook")

    with page.expect_response(lambda r: r.request.method == "POST") as answered:
        page.get_by_role("button", name="Rotate the secret").click()
    assert answered.value.headers.get("cache-control") == "no-store"
    expect(page.get_by_role("heading", name="The new secret")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Shown this once")
    secret = page.locator("#secret").inner_text().strip()
    assert len(secret) >= 16, secret
    expect(generation).to_have_text(str(before[0] + 1))
    expect(fingerprint).not_to_have_text(before[1])
    expect(page.get_by_text(f"{console.url}/hooks/acme/contact-form")).to_be_visible()  # the signing example
    shoot(page, request, "rotated")

    assert _deliver(console, secret).status_code == 202  # the secret on the page is the real one
    assert _deliver(console, secret + "x").status_code == 401

    page.goto(console.url + "/ui/accounts/acme/workflows/contact-form/webhook")  # shown once: not again
    expect(generation).to_have_text(str(before[0] + 1))
    expect(page.get_by_role("heading", name="The new secret")).to_have_count(0)
    expect(page.get_by_text(secret)).to_have_count(0)
    shoot(page, request, "after")


def _deliver(console: Console, secret: str) -> requests.Response:
    body = json.dumps({"name": "Jane"}).encode()
    stamp = str(int(time.time()))
    return requests.post(console.url + "/hooks/acme/contact-form", data=body, timeout=10, headers={
        "Content-Type": "application/json", TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, body)})


def test_dry_run_on_a_record(page: Page, console: Console, request: pytest.FixtureRequest) -> None:
    """The Dry run tab of acme/triage on the stored ticket: succeeded, no side effects, the record's title in
    the step's output, and no execution started."""
    sign_in(page, console)
    page.goto(console.url + "/ui/accounts/acme/workflows/triage")
    page.get_by_role("link", name="Dry run", exact=True).click()
    expect(page).to_have_url(console.url + "/ui/accounts/acme/workflows/triage/dry-run")
    page.locator("input[name=record_type]").fill("ticket")
    page.locator("input[name=record_id]").fill(console.ticket)
    shoot(page, request, "form")
    page.get_by_role("button", name="Dry run").click()

    expect(page.get_by_role("heading", name="Dry run: succeeded")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(page.get_by_role("listitem").filter(has_text="No side effects.")).to_be_visible()
    step = page.get_by_role("listitem").filter(has=page.get_by_text("look", exact=True))
    expect(step).to_contain_text("succeeded")
    step.get_by_text("Input and output").click()
    expect(step.locator("pre").last).to_contain_text("Printer on fire")
    shoot(page, request, "result")

    page.get_by_role("link", name="Executions", exact=True).click()
    expect(page.get_by_role("cell", name="No executions.")).to_be_visible()  # a dry run is no execution
