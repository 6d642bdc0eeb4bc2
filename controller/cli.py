"""`wfctl`: the command line. Thin: parse, build settings, call one function, print.

Exit codes: 0 ok, 1 the answer is "no" (invalid, changes pending, something not applied),
2 usage or environment error, 3 refused by a guard or a feature flag. Errors print one line to
stderr, never a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from dataclasses import replace
from datetime import UTC
from pathlib import Path
from typing import Any, NoReturn

import click

from controller.cli_web import register as register_web_commands
from controller.errors import Problem, WfcError
from controller.reconcile.plan import BlockedOp, Plan, VersionOp
from controller.reconcile.validate import validate_tree
from controller.settings import Settings
from controller.store import views

FORMATS = click.Choice(["text", "json", "github"])


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"wfctl: error: {message}", err=True)
    sys.exit(code)


class Group(click.Group):
    """Turns every :class:`WfcError` into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WfcError as e:
            _fail(str(e), e.exit_code)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--repo", envvar="WFC_REPO", default=".", show_default=True, help="Repository path or URL.")
@click.option("--branch", envvar="WFC_BRANCH", default=None, help="Branch (default: the repository's current one).")
@click.option("--root", envvar="WFC_ROOT", default="workflows.d", show_default=True, help="Folder of workflows.")
@click.option("--db", "database_url", envvar="WFC_DATABASE_URL", default=None,
              help="SQLAlchemy URL (default: SQLite in the data directory).")
@click.option("--data-dir", envvar="WFC_DATA_DIR", default=".wfctl", show_default=True, type=click.Path(path_type=Path))
@click.option("--config", "config_path", envvar="WFC_CONFIG", default=None, type=click.Path(path_type=Path),
              help="Controller configuration (feature flags); default <data-dir>/config.yaml.")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@click.version_option(package_name="wfctl")
@click.pass_context
def cli(ctx: click.Context, repo: str, branch: str | None, root: str, database_url: str | None, data_dir: Path,
        config_path: Path | None, verbose: int) -> None:
    """Reconcile workflow YAML in git into a runtime store, and run it."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.obj = Settings(repo=repo, branch=branch, root=root.strip("/") or ".", database_url=database_url,
                       data_dir=data_dir, config_path=config_path)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.pass_obj
def validate(settings: Settings, paths: tuple[Path, ...], fmt: str) -> None:
    """Check workflow files offline (default: the whole root). Exit 1 when any is invalid."""
    if "://" in settings.repo:
        _fail("validate reads a checkout; pass --repo PATH (a working tree), not a URL")
    from controller.check.cases import check_test_files, test_files

    top = Path(settings.repo)
    report = validate_tree(top, settings.root, paths)
    tests = test_files(top, settings.root, paths)
    report = replace(report, files=report.files + len(tests),
                     problems=report.problems + tuple(check_test_files(top.resolve(), tests)))
    if fmt == "json":
        _emit({"valid": report.ok, "files": report.files, "problems": [_problem(p) for p in report.problems]})
    elif fmt == "github":
        for p in report.problems:
            click.echo(f"::error file={p.path},line={max(p.line, 1)},col={max(p.column, 1)}::"
                       f"{(p.field + ': ' if p.field else '') + p.message}")
    else:
        for p in report.problems:
            click.echo(str(p))
        bad = len({p.path for p in report.problems})
        click.echo(f"{report.files} file(s) checked, {bad} invalid" if bad else f"{report.files} file(s) valid")
    sys.exit(0 if report.ok else 1)


def _problem(p: Problem) -> dict[str, Any]:
    return {"path": p.path, "line": p.line, "column": p.column, "field": p.field, "message": p.message}


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def plan(settings: Settings, as_json: bool) -> None:
    """Show what `sync` would do now. Exit 0 nothing to do, 1 changes pending."""
    with settings.reconciler() as reconciler:
        result = reconciler.plan()
        with reconciler.store.read() as conn:
            standing = views.not_ready(conn)
    rows = _plan_rows(result)
    for w in standing:
        if w["id"] not in {r["id"] for r in rows}:
            rows.append({"id": w["id"], "action": w["sync"].lower(), "versions": [], "message": w["message"]})
    rows.sort(key=lambda r: r["id"])
    if as_json:
        _emit({"base": result.base, "head": result.head.sha, "full": result.full, "workflows": rows})
    elif not rows:
        click.echo(f"nothing to do at {result.head.sha[:12]}")
    else:
        for r in rows:
            detail = ", ".join(f"v{v['version']} {v['commit'][:7]} {v['summary']!r}" for v in r["versions"])
            click.echo(f"{r['action']:<8} {r['id']}  {detail or r['message']}")
    sys.exit(1 if rows else 0)


def _plan_rows(result: Plan) -> list[dict[str, Any]]:
    versions_of: dict[str, list[dict[str, Any]]] = {}
    messages: dict[str, str] = {}
    for op in result.ops:
        if isinstance(op, VersionOp):
            versions_of.setdefault(op.key, []).append(
                {"version": op.version, "action": op.action, "commit": op.commit.sha, "summary": op.commit.summary,
                 "restored_from": op.restored_from, "changes": op.changes})
        elif isinstance(op, BlockedOp):
            messages[op.key] = op.message
    rows = []
    for key, action in result.actions().items():
        versions = versions_of.get(key, [])
        message = "; ".join(str(p) for p in result.invalid.get(key, ())) or messages.get(key, "")
        rows.append({"id": key, "action": action, "versions": versions, "message": message})
    return rows


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def sync(settings: Settings, as_json: bool) -> None:
    """Run one reconcile pass. Exit 0 all applied, 1 something stayed Invalid or Blocked."""
    from controller.security.secrets import ensure_webhook_secrets

    with settings.reconciler() as reconciler:
        result = reconciler.sync()
        ensure_webhook_secrets(reconciler.store, settings)
        with reconciler.store.read() as conn:
            not_ready = views.not_ready(conn)
    rows = _plan_rows(result)
    if as_json:
        _emit({"base": result.base, "head": result.head.sha, "full": result.full, "applied": rows,
               "not_ready": [{"id": w["id"], "sync": w["sync"], "message": w["message"]} for w in not_ready]})
    else:
        versions = sum(len(r["versions"]) for r in rows)
        click.echo(f"synced {result.head.sha[:12]}: {versions} new version(s), "
                   f"{sum(r['action'] == 'delete' for r in rows)} deleted, {len(not_ready)} not ready")
        for r in rows:
            for v in r["versions"]:
                click.echo(f"  {v['action']:<9} {r['id']} v{v['version']} ({v['commit'][:7]} {v['summary']})")
            if r["action"] == "delete":
                click.echo(f"  deleted   {r['id']}")
        for w in not_ready:
            click.echo(f"  {w['sync']:<9} {w['id']}: {w['message']}")
    sys.exit(1 if not_ready else 0)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(settings: Settings, as_json: bool) -> None:
    """Show the source and every workflow with its version and sync state."""
    store = settings.open_store()
    try:
        with store.read() as conn:
            state = views.status(conn)
    finally:
        store.close()
    if as_json:
        _emit(state)
        return
    source = state["source"]
    ready = next((c for c in source["conditions"] if c["type"] == "Ready"), None)
    click.echo(f"source: {source['location'] or settings.repo} ({source['branch'] or '?'}) "
               f"applied {(source['last_applied_commit'] or 'nothing')[:12]}"
               + (f" - Ready={ready['status']} {ready['reason']}: {ready['message']}" if ready else ""))
    for w in state["workflows"]:
        version = f"v{w['version']}" if w["version"] else "-"
        enabled = "" if w["enabled"] else " (disabled)"
        click.echo(f"{w['sync']:<8} {version:<5} {w['id']}{enabled}" + (f"  {w['message']}" if w["message"] else ""))


@cli.command()
@click.argument("workflow")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def history(settings: Settings, workflow: str, as_json: bool) -> None:
    """List the versions of ACCOUNT/NAME, newest first."""
    rows = _read(settings, lambda conn: views.history(conn, _key(workflow)))
    if as_json:
        _emit(rows)
        return
    for r in rows:
        restored = f" (restored from v{r['restored_from']})" if r["restored_from"] else ""
        click.echo(f"v{r['version']:<4} {r['commit'][:7]} {r['committed_at']} {r['author']} <{r['author_email']}>  "
                   f"{r['summary']}{restored}")


@cli.command()
@click.argument("workflow")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def audit(settings: Settings, workflow: str, as_json: bool) -> None:
    """List the audit events of ACCOUNT/NAME with field-level changes, newest first."""
    rows = _read(settings, lambda conn: views.audit(conn, _key(workflow)))
    if as_json:
        _emit(rows)
        return
    for r in rows:
        version = f"v{r['version']}" if r["version"] else "-"
        commit = (r["commit"] or "")[:7]
        click.echo(f"{r['at']} {r['action']:<9} {version:<5} {commit} {r['actor']}  {r['message']}")
        for change in r["changes"]:
            click.echo(f"    {change['path']}: {json.dumps(change['old'])} -> {json.dumps(change['new'])}")


@cli.command()
@click.argument("workflow")
@click.option("--to", "version", type=int, required=True, help="The version to restore (see `wfctl history`).")
@click.option("--message", "note", default=None, help="A note for the commit body.")
@click.option("--controller", "controller_url", default=None, metavar="URL",
              help="Ask this running controller which executions are in flight (instead of --db).")
@click.option("--token", default=None, help="API token for --controller (workflow.read).")
@click.pass_obj
def restore(settings: Settings, workflow: str, version: int, note: str | None, controller_url: str | None,
            token: str | None) -> None:
    """Commit VERSION's content of ACCOUNT/NAME to the checkout (refused while executions are in flight)."""
    from controller.reconcile.restore import restore as do_restore

    if "://" in settings.repo:
        _fail("restore commits in a checkout; pass --repo PATH (a working tree), not a URL")
    if controller_url:
        from controller.check.live import ControllerClient

        if not token:
            _fail("--controller needs --token (an API token with workflow.read)")
        done = do_restore(Path(settings.repo), _key(workflow), version, note, live=ControllerClient(controller_url, token))
    else:
        store = settings.open_store()
        try:
            done = do_restore(Path(settings.repo), _key(workflow), version, note, store=store)
        finally:
            store.close()
    click.echo(f"committed {done.commit[:12]} {done.path}: Restore {workflow} to version {version}; push it or "
               f"open a pull request")


@cli.command("dry-run")
@click.argument("target", metavar="ACCOUNT/NAME|PATH")
@click.option("--entity", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A JSON file: the record to run against.")
@click.option("--record", "record", default=None, metavar="TYPE:ID", help="Run against this stored record (read-only).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def dry_run(settings: Settings, target: str, entity: Path | None, record: str | None, as_json: bool) -> None:
    """Run a workflow with zero side effects and show what it would do. Exit 1 if a step fails."""
    from controller.check.target import dry_run as run_dry

    if entity is not None and record is not None:
        _fail("pass --entity or --record, not both")
    result = run_dry(settings, target, entity=entity, record=_record_ref(record) if record else None)
    if as_json:
        _emit(result.view())
    else:
        click.echo(_dry_run_text(result))
    sys.exit(0 if result.ok else 1)


def _dry_run_text(result: Any) -> str:
    if not result.started:
        return f"{result.workflow}: would not start: " + "; ".join(str(m.actual) for m in result.mismatches)
    run = result.result
    lines = [f"dry run of {result.workflow}: {run.status}" + (f" - {run.error}" if run.error else "")]

    def steps(items: list[dict[str, Any]], indent: str) -> None:
        for step in items:
            branch = f" -> {step['branch']}" if step.get("branch") else ""
            lines.append(f"{indent}{step['action_id']:<24} {step['type']:<14} {step['status']}{branch}"
                         + (f"  {step['intent']}" if step.get("intent") else "")
                         + (f"  {step['error']}" if step.get("error") else ""))
            steps(step.get("steps") or [], indent + "    ")

    steps(run.steps, "  ")
    return "\n".join(lines)


@cli.command()
@click.option("--base", default=None, metavar="REF", help="Compare with this commit or branch (the PR's target).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github", "junit"]), default="text",
              show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report here instead of standard output.")
@click.option("--controller", "controller_url", default=None, metavar="URL",
              help="A live controller to ask whether a restore would be held back now.")
@click.option("--token", default=None, help="API token for --controller (workflow.read).")
@click.pass_obj
def check(settings: Settings, base: str | None, fmt: str, output: Path | None, controller_url: str | None,
          token: str | None) -> None:
    """What CI runs on a pull request: validate, plan against --base, dry-run what changed."""
    from controller.check.check import run_check
    from controller.check.report import render
    from controller.engine.clock import SystemClock

    lookup = None
    if controller_url:
        if not token:
            _fail("--controller needs --token (an API token with workflow.read)")
        lookup = _controller_lookup(controller_url, token)
    report = run_check(Path(settings.repo), settings.root, base=base, config=settings.config(),
                       now=SystemClock().now, in_flight=lookup)
    rendered = render(report, fmt)
    if output is not None:
        output.write_text(rendered)
        click.echo(f"check {'passed' if report.ok else 'FAILED'}; report written to {output}")
    else:
        click.echo(rendered, nl=False)
    sys.exit(0 if report.ok else 1)


def _controller_lookup(url: str, token: str) -> Any:
    from controller.check.live import ControllerClient

    return ControllerClient(url, token).in_flight


@cli.command()
def schema() -> None:
    """Print the JSON Schema of workflow files."""
    from controller.model import schema_text

    click.echo(schema_text(), nl=False)


@cli.group()
def db() -> None:
    """Store maintenance."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(settings: Settings) -> None:
    """Create or migrate the store's tables to the newest schema."""
    store = settings.open_store(upgrade=False)
    try:
        store.upgrade()
        click.echo(f"store {store.safe_url} is up to date")
    finally:
        store.close()


def _key(workflow: str) -> str:
    account, _, name = workflow.partition("/")
    if not account or not name or "/" in name:
        _fail(f"expected ACCOUNT/NAME, got {workflow!r}")
    return workflow


def _read(settings: Settings, query: Any) -> Any:
    store = settings.open_store()
    try:
        with store.read() as conn:
            return query(conn)
    finally:
        store.close()



# -- engine commands ---------------------------------------------------------------------------


def _open_engine(settings: Settings) -> Any:
    store = settings.open_store()
    return store, settings.engine(store)


def _record_ref(value: str) -> tuple[str, str]:
    from controller.store.records import parse_record_ref

    return parse_record_ref(value)


@cli.command()
@click.argument("workflow")
@click.option("--record", "record", default=None, metavar="TYPE:ID", help="Run on this record.")
@click.option("--payload", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A JSON file: the trigger payload (trigger.body).")
@click.option("--wait", "wait_", is_flag=True, help="Run it here and wait for a final state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def run(settings: Settings, workflow: str, record: str | None, payload: Path | None, wait_: bool,
        as_json: bool) -> None:
    """Start a real execution of ACCOUNT/NAME now and print its id."""
    from controller.engine.starting import start_now

    key = _key(workflow)
    body = _json_file(payload) if payload else None
    store, engine = _open_engine(settings)
    try:
        execution_id = start_now(engine, key, record=_record_ref(record) if record else None, payload=body)
        if not wait_:
            _emit({"execution_id": execution_id}) if as_json else click.echo(execution_id)
            return
        from controller.engine.starting import run_to_end

        result = run_to_end(engine, execution_id)
    finally:
        store.close()
    if as_json:
        _emit(result)
    else:
        click.echo(f"execution {execution_id} {result['status']}" + (f": {result['error']}" if result["error"] else ""))
    sys.exit(0 if result["status"] == "succeeded" else 1)


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        _fail(f"{path}: not a JSON file ({e})")


@cli.group()
def executions() -> None:
    """List, inspect, retry and cancel executions."""


@executions.command("list")
@click.option("--workflow", default=None, metavar="ACCOUNT/NAME")
@click.option("--status", type=click.Choice(["queued", "running", "waiting", "succeeded", "failed", "terminated"]))
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def executions_list(settings: Settings, workflow: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Executions, newest first."""
    rows = _read(settings, lambda conn: views.executions_list(conn, workflow=workflow, status=status, limit=limit))
    if as_json:
        _emit(rows)
        return
    for r in rows:
        duration = f"{r['duration_ms']}ms" if r["duration_ms"] is not None else "-"
        click.echo(f"{r['id']:>6} {r['status']:<10} {r['workflow']} v{r['version'] or '-'} {r['created_at']} "
                   f"{duration}" + (f"  {r['error']}" if r["error"] else ""))


@executions.command("show")
@click.argument("execution_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def executions_show(settings: Settings, execution_id: int, as_json: bool) -> None:
    """One execution with its per-action trace."""
    data = _read(settings, lambda conn: views.execution(conn, execution_id))
    if as_json:
        _emit(data)
        return
    click.echo(f"execution {data['id']} of {data['workflow']} v{data['version'] or '-'}: {data['status']}"
               + (f" ({data['error']})" if data["error"] else ""))
    click.echo(f"  trigger: {json.dumps(data['trigger'], default=str)[:200]}")
    for step in data["steps"]:
        click.echo(f"  {step['action_id']:<24} {step['type']:<14} {step['status']:<10} attempts={step['attempts']}"
                   + (f" waited={step['wait_seconds']}s" if step["wait_seconds"] is not None else "")
                   + (f"  {step['error']}" if step["error"] else ""))


@executions.command("retry")
@click.argument("execution_id", type=int)
@click.option("--latest", is_flag=True, help="Run on the workflow's latest version, not the original's.")
@click.pass_obj
def executions_retry(settings: Settings, execution_id: int, latest: bool) -> None:
    """Start a new execution with the original's trigger input."""
    store, engine = _open_engine(settings)
    try:
        click.echo(engine.retry(execution_id, latest=latest))
    finally:
        store.close()


@executions.command("cancel")
@click.argument("execution_id", type=int)
@click.pass_obj
def executions_cancel(settings: Settings, execution_id: int) -> None:
    """Terminate an execution (a running one at its next step)."""
    store, engine = _open_engine(settings)
    try:
        click.echo(f"execution {execution_id} {engine.cancel(execution_id)}")
    finally:
        store.close()


@cli.group()
def records() -> None:
    """Write records of the built-in record store (fires record triggers)."""


def _record_write(settings: Settings, action: str, *args: Any) -> None:
    from controller.engine.records import RecordService

    store, engine = _open_engine(settings)
    try:
        service = RecordService(engine)
        record = getattr(service, action)(*args)
    finally:
        store.close()
    _emit({"record": record, "executions": service.started})


def _data_option(data: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as e:
        _fail(f"--data is not JSON: {e}")
    if not isinstance(value, dict):
        _fail("--data must be a JSON object")
    return value


@records.command("create")
@click.argument("entity")
@click.option("--account", required=True)
@click.option("--data", required=True, help="The record's fields as a JSON object.")
@click.pass_obj
def records_create(settings: Settings, entity: str, account: str, data: str) -> None:
    """Create a record of TYPE and fire `created` triggers."""
    _record_write(settings, "create", account, entity, _data_option(data))


@records.command("update")
@click.argument("ref", metavar="TYPE:ID")
@click.option("--account", required=True)
@click.option("--data", required=True, help="Fields to merge, as a JSON object.")
@click.pass_obj
def records_update(settings: Settings, ref: str, account: str, data: str) -> None:
    """Merge fields into a record and fire `updated` triggers."""
    entity, record_id = _record_ref(ref)
    _record_write(settings, "update", account, entity, record_id, _data_option(data))


@records.command("delete")
@click.argument("ref", metavar="TYPE:ID")
@click.option("--account", required=True)
@click.pass_obj
def records_delete(settings: Settings, ref: str, account: str) -> None:
    """Delete a record and fire `deleted` triggers."""
    entity, record_id = _record_ref(ref)
    _record_write(settings, "delete", account, entity, record_id)


@cli.group()
def directory() -> None:
    """The account directory: users, mailboxes, channels, object types."""


@directory.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--account", required=True)
@click.pass_obj
def directory_load(settings: Settings, file: Path, account: str) -> None:
    """Replace the account's directory with FILE (YAML or JSON), in one transaction."""
    from controller.model.directory import parse_directory
    from controller.store import directory as store_directory

    entries = parse_directory(file.read_text(), str(file))
    store = settings.open_store()
    try:
        with store.tx() as conn:
            counts = store_directory.replace_account(conn, account, entries, _now())
    finally:
        store.close()
    click.echo(f"directory of {account}: " + ", ".join(f"{n} {kind}(s)" for kind, n in sorted(counts.items())))


@directory.command("set-status")
@click.argument("ref", metavar="KIND:ID")
@click.argument("status")
@click.option("--account", required=True)
@click.pass_obj
def directory_set_status(settings: Settings, ref: str, status: str, account: str) -> None:
    """Change one entry's status (active, deactivated, deleted, disconnected)."""
    from controller.store import directory as store_directory

    store = settings.open_store()
    try:
        with store.tx() as conn:
            entry = store_directory.set_status(conn, account, ref, status, _now())
    finally:
        store.close()
    click.echo(f"{entry.ref} is {entry.status}")


@cli.group()
def mail() -> None:
    """Inbound mail for `email` triggers."""


@mail.command("deliver")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--account", required=True)
@click.option("--mailbox", required=True, metavar="mailbox:ID")
@click.pass_obj
def mail_deliver(settings: Settings, file: Path, account: str, mailbox: str) -> None:
    """Hand FILE (.eml) to the workflows listening on the mailbox; prints the executions started."""
    from controller.engine import triggers

    store, engine = _open_engine(settings)
    try:
        with store.tx() as conn:
            started = triggers.deliver_mail(engine, conn, account, mailbox, file.read_bytes())
    finally:
        store.close()
    _emit({"executions": started})


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Where the HTTP service listens.")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--interval", default=60.0, show_default=True, type=float, help="Seconds between reconcile passes.")
@click.option("--workers", default=4, show_default=True, type=int)
@click.option("--lease", default=60.0, show_default=True, type=float, help="Seconds a worker's claim lasts.")
@click.pass_obj
def serve(settings: Settings, host: str, port: int, interval: float, workers: int, lease: float) -> None:
    """Run the controller: HTTP service, reconcile loop, scheduler and workers, until SIGTERM."""
    import signal

    from controller.reconcile.reconciler import Reconciler
    from controller.security.secrets import SecretBox, ensure_webhook_secrets
    from controller.service import Controller, ServeOptions
    from webhooks import create_app, start_server

    store = settings.open_store()
    engine = settings.engine(store, lease_seconds=lease)
    box = SecretBox.for_settings(settings)
    with settings.open_source() as source:
        controller = Controller(Reconciler(source, store, location=settings.repo), engine,
                                ServeOptions(interval=interval, workers=workers),
                                after_sync=lambda: ensure_webhook_secrets(store, box))
        try:
            http = start_server(create_app(settings, store, engine, controller=controller), host, port)
        except OSError as e:
            _fail(f"cannot listen on {host}:{port}: {e.strerror or e}; pass --port")
        stopping = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            logging.getLogger("wfctl").info("signal %d: stopping", signum)
            stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        controller.start()
        click.echo(f"wfctl serving {settings.repo} on {http.url} with {workers} worker(s); reconcile every "
                   f"{interval:g}s", err=True)
        while not stopping.wait(0.5):
            pass
        http.stop()
        controller.stop()
    store.close()


def _now() -> Any:
    from datetime import datetime

    return datetime.now(UTC)


register_web_commands(cli)


def main() -> None:
    cli(prog_name="wfctl")
