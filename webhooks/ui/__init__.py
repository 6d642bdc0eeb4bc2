"""The web console under ``/ui/``: server-rendered pages over the same controller functions as the API.

Sign-in takes an API token; the session cookie (signed, HttpOnly, SameSite=Strict) holds it encrypted
under the controller's key, and every request verifies it again, so a revoked token signs out at
once. Every page and button asks the token's permissions (a button is not shown without one, and a
forced request gets the 403 page); every form carries a per-session CSRF token. The console reads
and acts (retry, cancel) but never writes to git.
"""

from __future__ import annotations

import difflib
import functools
import hmac
import json
import secrets as random
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, abort, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from controller.errors import AuthError, NotFoundError, WfcError
from controller.metrics import windows
from controller.safeguards import alerts as alert_store
from controller.safeguards import suspension
from controller.security import secrets, tokens
from controller.security.tokens import Token
from controller.store import decisions, views
from controller.store import records as record_store
from webhooks.context import services
from webhooks.errors import status_of

blueprint = Blueprint("ui", __name__, url_prefix="/ui", template_folder="templates")
View = TypeVar("View", bound=Callable[..., Any])
PAGE = 50


def signed_in(view: View) -> View:
    """The page needs a valid token in the session; otherwise the sign-in form."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = _token()
        if token is None:
            return redirect(url_for("ui.sign_in", next=request.path))
        g.ui_token = token
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def allowed(permission: str) -> bool:
    token: Token | None = g.get("ui_token")
    return token is not None and token.allows(permission)


def need(permission: str) -> None:
    if not allowed(permission):
        abort(403, description=f"this token lacks the permission {permission}")


@blueprint.app_context_processor
def _helpers() -> dict[str, Any]:
    return {"allowed": allowed, "csrf": _csrf_token, "token": g.get("ui_token")}


@blueprint.before_request
def _check_csrf() -> None:
    if request.method == "POST" and request.endpoint != "ui.sign_in":
        sent = request.form.get("csrf", "")
        if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
            abort(400, description="the form expired or did not come from this console; reload the page")


@blueprint.errorhandler(403)
@blueprint.errorhandler(400)
@blueprint.errorhandler(404)
def _error(error: Any) -> Any:
    return render_template("ui/error.html", code=error.code, message=error.description), error.code


@blueprint.errorhandler(WfcError)
def _wfc_error(error: WfcError) -> Any:
    code, _ = status_of(error)  # the API's mapping: a guard 409, a feature flag 403, ...
    return render_template("ui/error.html", code=code, message=str(error)), code


# -- sign-in ---------------------------------------------------------------------------------------


@blueprint.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    error = None
    if request.method == "POST":
        bearer = request.form.get("token", "").strip()
        try:
            with services().store.read() as conn:
                token = tokens.verify(conn, bearer)
        except AuthError as e:
            error = str(e)
        else:
            session.clear()
            session["t"] = services().box.encrypt(bearer)
            session["csrf"] = random.token_urlsafe(32)
            target = request.args.get("next") or ""
            return redirect(target if target.startswith("/ui/") else url_for("ui.workflows", account=token.account))
    return render_template("ui/sign_in.html", error=error), 401 if error else 200


@blueprint.post("/sign-out")
def sign_out() -> Response:
    session.clear()
    return redirect(url_for("ui.sign_in"))


@blueprint.get("/")
@signed_in
def home() -> Response:
    return redirect(url_for("ui.workflows", account=g.ui_token.account))


# -- pages -----------------------------------------------------------------------------------------


@blueprint.get("/accounts/<account>/workflows")
@signed_in
def workflows(account: str) -> Any:
    """Every workflow of the account: sync state, version, trigger, last execution, 24h success rate."""
    _page(account)
    found = services()
    wanted, query = request.args.get("state", ""), request.args.get("q", "").strip()
    metrics_on = found.settings.config().enabled("workflow_metrics", account)
    rates: dict[str, Any] = {}
    series: dict[str, list[int]] = {}
    with found.store.read() as conn:
        rows = [w for w in views.status(conn)["workflows"] if w["id"].split("/", 1)[0] == account]
        last = {r["workflow"]: r for r in views.executions_list(conn, account=account, limit=500)}
        if metrics_on:  # (the flag hides them here as on the API; the rollups go on)
            rates = {r["workflow"]: r["success_rate"] for r in windows.account_rows(conn, account, "24h",
                                                                                     found.now())[1]}
            series = windows.daily_executions(conn, account, found.now(), days=30)
    shown = [w for w in rows if (not wanted or w["sync"] == wanted or (wanted == "Suspended" and w["suspended"]))
             and (not query or query in w["id"])]
    return render_template("ui/workflows.html", account=account, workflows=shown, last=last, rates=rates,
                           series=series, state=wanted, q=query)


@blueprint.get("/accounts/<account>/workflows/<name>")
@signed_in
def workflow(account: str, name: str) -> Any:
    """One workflow, by tab: versions (with a diff of two), audit, metrics, executions."""
    key = _page(account, name)
    tab = request.args.get("tab", "versions")
    found = services()
    context: dict[str, Any] = {}
    with found.store.read() as conn:
        current = views.workflow(conn, key)
        if tab == "versions":
            history = views.history(conn, key)
            context["versions"] = history
            left, right = request.args.get("a", type=int), request.args.get("b", type=int)
            if left and right:
                a_text = views.version_content(conn, key, left)["source_text"]
                b_text = views.version_content(conn, key, right)["source_text"]
                context["diff"] = _diff(a_text, b_text, left, right)
        elif tab == "audit":
            context["events"] = views.audit(conn, key)
        elif tab == "metrics":
            found.settings.config().require_metrics(account)
            window_name = request.args.get("window", "24h")
            context["metrics"] = windows.workflow_metrics(conn, key, window_name, found.now(), by_version=True)
            context["series"] = windows.daily_series(conn, key, found.now(), days=30)
            context["changed_versions"] = {v for v, _ in windows.change_points(context["metrics"]["versions"])}
        elif tab == "executions":
            status = request.args.get("status") or None
            before = request.args.get("before", type=int)
            context["executions"] = views.executions_list(conn, workflow=key, status=status, limit=PAGE,
                                                          before=before)
            context["status"] = status
        else:
            abort(404, description=f"no tab {tab!r}")
    return render_template("ui/workflow.html", account=account, name=name, key=key, tab=tab, w=current, **context)


@blueprint.get("/executions/<id:execution_id>")
@signed_in
def execution(execution_id: int) -> Any:
    """One execution: its steps as a timeline, with inputs, outputs and errors; Retry and Cancel."""
    need("workflow.read")
    with services().store.read() as conn:
        shown = views.execution(conn, execution_id)
    _own(shown["workflow"].split("/", 1)[0], f"no execution {execution_id}")
    return render_template("ui/execution.html", e=shown)


@blueprint.post("/executions/<id:execution_id>/retry")
@signed_in
def retry(execution_id: int) -> Response:
    need("workflow.retry")
    _execution_account(execution_id)
    found = services()
    new_id = found.engine.retry(execution_id, latest=request.form.get("latest") == "1")
    return redirect(url_for("ui.execution", execution_id=new_id))


@blueprint.post("/executions/<id:execution_id>/cancel")
@signed_in
def cancel(execution_id: int) -> Response:
    need("workflow.manage")
    _execution_account(execution_id)
    found = services()
    found.engine.cancel(execution_id)
    return redirect(url_for("ui.execution", execution_id=execution_id))


# -- helpers ---------------------------------------------------------------------------------------


def _token() -> Token | None:
    sealed = session.get("t")
    if not sealed:
        return None
    found = services()
    try:
        bearer = found.box.decrypt(sealed)
        with found.store.read() as conn:
            return tokens.verify(conn, bearer)
    except WfcError:
        session.clear()  # revoked, or its user deactivated: signed out at once
        return None


def _page(account: str, name: str | None = None, permission: str = "workflow.read") -> str:
    """A page of ``account`` (404 for another's) that needs ``permission`` (403 without); the workflow's key."""
    _own(account)
    need(permission)
    return f"{account}/{name}" if name else account


def _own(account: str, what: str | None = None) -> None:
    if account != g.ui_token.account:
        abort(404, description=what or f"no account {account!r} here")


def _execution_account(execution_id: int) -> None:
    with services().store.read() as conn:
        shown = views.execution(conn, execution_id)
    _own(shown["workflow"].split("/", 1)[0], f"no execution {execution_id}")


def _actor() -> str:
    """The audit trail's name for the person at the console."""
    token: Token = g.ui_token
    return f"{token.user} (console, token {token.name or token.id})"


def _csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = random.token_urlsafe(32)
    return str(session["csrf"])


def _diff(a: str, b: str, left: int, right: int) -> list[tuple[str, str, str, str]]:
    """Side by side: (left line, right line, kind, marker) with kind equal, changed, added or removed."""
    rows: list[tuple[str, str, str, str]] = []
    a_lines, b_lines = a.splitlines(), b.splitlines()
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a_lines, b=b_lines).get_opcodes():
        if op == "equal":
            rows += [(x, x, "equal", " ") for x in a_lines[i1:i2]]
        elif op == "replace":
            left_part, right_part = a_lines[i1:i2], b_lines[j1:j2]
            for k in range(max(len(left_part), len(right_part))):
                rows.append((left_part[k] if k < len(left_part) else "", right_part[k] if k < len(right_part) else "",
                             "changed", "~"))
        elif op == "delete":
            rows += [(x, "", "removed", "-") for x in a_lines[i1:i2]]
        else:
            rows += [("", x, "added", "+") for x in b_lines[j1:j2]]
    return rows


# -- more tabs and pages ---------------------------------------------------------------------------


@blueprint.get("/accounts/<account>/workflows/<name>/webhook")
@signed_in
def webhook(account: str, name: str) -> Any:
    """The signing secret's fingerprint and generation; Rotate (workflow.manage)."""
    key = _page(account, name)
    found = services()
    with found.writing() as conn:
        current = views.workflow(conn, key)
        if current["trigger"] != "webhook":
            abort(404, description=f"{key} is not a webhook workflow")
        secrets.ensure_secrets(conn, found.box, [key], found.now())
        info = secrets.describe(conn, key).view()
    return render_template("ui/webhook.html", account=account, name=name, key=key, w=current, info=info,
                           rotated=None)


@blueprint.post("/accounts/<account>/workflows/<name>/webhook")
@signed_in
def rotate(account: str, name: str) -> Any:
    """A new secret, shown on this answer only (no-store); the old one stops working now."""
    key = _page(account, name, "workflow.manage")
    found = services()
    with found.writing() as conn:
        current = views.workflow(conn, key)
        rotated = secrets.rotate(conn, found.box, key, actor=_actor(), now=found.now()).view()
    page = render_template("ui/webhook.html", account=account, name=name, key=key, w=current, info=rotated,
                           rotated=rotated, base=request.host_url.rstrip("/"))
    return page, 200, {"Cache-Control": "no-store"}


@blueprint.get("/accounts/<account>/workflows/<name>/restore")
@signed_in
def restore(account: str, name: str) -> Any:
    """For a chosen version: would a restore be held now, the diff it would apply, the command to run."""
    key = _page(account, name)
    wanted = request.args.get("to", type=int)
    with services().store.read() as conn:
        current = views.workflow(conn, key)
        history = views.history(conn, key)
        in_flight = [e for e in views.executions_list(conn, workflow=key, limit=200)
                     if e["status"] in ("running", "waiting")]
        diff = None
        if wanted and current["version"]:
            diff = _diff(views.version_content(conn, key, current["version"])["source_text"],
                         views.version_content(conn, key, wanted)["source_text"], current["version"], wanted)
    later = [v["commit"] for v in history if wanted and v["version"] > wanted]
    return render_template("ui/restore.html", account=account, name=name, key=key, w=current, versions=history,
                           wanted=wanted, diff=diff, in_flight=in_flight, later=later)


@blueprint.route("/accounts/<account>/workflows/<name>/dry-run", methods=["GET", "POST"])
@signed_in
def dry_run(account: str, name: str) -> Any:
    """Dry-run the applied version on a stored record or a pasted JSON entity: no side effects."""
    from controller.check.target import dry_run as run_dry

    key = _page(account, name, "workflow.dry_run")
    result, error = None, None
    with services().store.read() as conn:
        current = views.workflow(conn, key)
    if request.method == "POST":
        record_id, pasted = request.form.get("record_id", "").strip(), request.form.get("entity", "").strip()
        record_type = request.form.get("record_type", "").strip()
        try:
            if pasted:
                entity = json.loads(pasted)
                if not isinstance(entity, dict):
                    raise ValueError("the entity must be a JSON object")
                result = run_dry(services().settings, key, entity_data=entity).view()
            else:
                record = (record_type, record_id) if record_id else None
                result = run_dry(services().settings, key, record=record).view()
        except (ValueError, WfcError) as e:
            error = str(e)
    return render_template("ui/dry_run.html", account=account, name=name, key=key, w=current, result=result,
                           error=error, form=request.form)


@blueprint.get("/accounts/<account>/records/<type_>/<record_id>")
@signed_in
def record(account: str, type_: str, record_id: str) -> Any:
    """A record, the workflows that run on it ("Run workflow"), and its trigger timeline."""
    _page(account)
    with services().store.read() as conn:
        try:
            data = record_store.get(conn, account, type_, record_id)
        except NotFoundError:
            data = None
        offered = views.manual_workflows(conn, account, type_)
        timeline = decisions.record_timeline(conn, account, type_, record_id)
    return render_template("ui/record.html", account=account, type_=type_, record_id=record_id, data=data,
                           offered=offered, timeline=timeline)


@blueprint.post("/accounts/<account>/records/<type_>/<record_id>/run/<name>")
@signed_in
def run_on_record(account: str, type_: str, record_id: str, name: str) -> Response:
    """The "Run workflow" button: start it now on this record."""
    from controller.engine.starting import start_now

    _page(account, permission="workflow.run_manual")
    found = services()
    execution_id = start_now(found.engine, f"{account}/{name}", record=(type_, record_id))
    return redirect(url_for("ui.execution", execution_id=execution_id))


@blueprint.get("/accounts/<account>")
@signed_in
def account_overview(account: str) -> Any:
    """The worst performers, open alerts and suspended workflows (with Resume) of the account."""
    _page(account)
    found = services()
    window_name = request.args.get("window", "7d")
    with found.store.read() as conn:
        overview = windows.account_metrics(conn, account, window_name, found.now())
        per_workflow = windows.daily_executions(conn, account, found.now(), days=30)
        open_alerts = alert_store.listing(conn, account=account, open_only=True)
        suspended = [w for w in views.status(conn)["workflows"]
                     if w["id"].split("/", 1)[0] == account and w["suspended"]]
    days = [sum(counts[i] for counts in per_workflow.values()) for i in range(30)]
    return render_template("ui/account.html", account=account, m=overview, alerts=open_alerts, suspended=suspended,
                           days=days)


@blueprint.post("/accounts/<account>/workflows/<name>/resume")
@signed_in
def resume(account: str, name: str) -> Response:
    _page(account, permission="workflow.manage")
    found = services()
    with found.writing() as conn:
        suspension.resume(conn, f"{account}/{name}", actor=_actor(), now=found.now())
    return redirect(url_for("ui.account_overview", account=account))
