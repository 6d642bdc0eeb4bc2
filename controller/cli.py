"""`wfctl`: the command line. Thin: parse, build settings, call one function, print.

Exit codes: 0 ok, 1 the answer is "no" (invalid, changes pending, something not applied),
2 usage or environment error, 3 refused by a guard or a feature flag. Errors print one line to
stderr, never a traceback.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from controller import cli_check, cli_engine, cli_metrics, cli_portable, cli_web
from controller.cli_common import emit, fail, key_arg, read
from controller.errors import Problem, WfcError
from controller.settings import Settings

if TYPE_CHECKING:
    from controller.reconcile.plan import Plan

FORMATS = click.Choice(["text", "json", "github"])


class Group(click.Group):
    """Turns every error into one line on stderr and its exit code: a :class:`WfcError` by its type,
    a usage mistake click found as exit 2, and anything unexpected as one line too (``-vv`` logs where)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.ClickException as e:  # a bad option or argument: one line, not the usage text
            hint = f" (see `{e.ctx.command_path} --help`)" if isinstance(e, click.UsageError) and e.ctx else ""
            fail(e.format_message().replace("\n", " ") + hint, e.exit_code)
        except click.exceptions.Abort:
            fail("aborted", 1)
        sys.exit(code or 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WfcError as e:
            fail(str(e), e.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as e:  # a bug, not the user's mistake; still one line, the rest in the log
            logging.getLogger("wfctl").debug("unexpected error", exc_info=True)
            fail(f"internal error: {type(e).__name__}: {e}; rerun with -vv to see where, and report it", 2)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--repo", envvar="WFC_REPO", default=".", show_default=True, help="Repository path or URL.")
@click.option("--branch", envvar="WFC_BRANCH", default=None, help="Branch (default: the repository's current one).")
@click.option("--root", envvar="WFC_ROOT", default="workflows.d", show_default=True, help="Folder of workflows.")
@click.option("--db", "database_url", envvar="WFC_DATABASE_URL", default=None,
              help="SQLAlchemy URL (default: SQLite in the data directory).")
@click.option("--data-dir", envvar="WFC_DATA_DIR", default=".wfctl", show_default=True, type=click.Path(path_type=Path))
@click.option("--config", "config_path", envvar="WFC_CONFIG", default=None, type=click.Path(path_type=Path),
              help="Controller configuration (feature flags); default <data-dir>/config.yaml.")
@click.option("--verify-commits", envvar="WFC_VERIFY_COMMITS", type=click.Choice(["off", "head", "all"]),
              default="off", show_default=True,
              help="Apply only signed commits: the head, or every commit since the last applied one.")
@click.option("--allowed-signers", envvar="WFC_ALLOWED_SIGNERS", default=None, type=click.Path(path_type=Path),
              help="SSH keys to trust, in git's gpg.ssh.allowedSignersFile format.")
@click.option("--gpg-home", envvar="WFC_GPG_HOME", default=None, type=click.Path(path_type=Path),
              help="A GnuPG home whose public keys are trusted.")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@click.version_option(package_name="wfctl")
@click.pass_context
def cli(ctx: click.Context, repo: str, branch: str | None, root: str, database_url: str | None, data_dir: Path,
        config_path: Path | None, verify_commits: str, allowed_signers: Path | None, gpg_home: Path | None,
        verbose: int) -> None:
    """Reconcile workflow YAML in git into a runtime store, and run it."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if config_path is not None and not config_path.is_file():
        fail(f"--config {config_path}: no such file" + (" (it is a folder)" if config_path.is_dir() else ""))
    ctx.obj = Settings(repo=repo, branch=branch, root=root.strip("/") or ".", database_url=database_url,
                       data_dir=data_dir, config_path=config_path, verify_commits=verify_commits,
                       allowed_signers=allowed_signers, gpg_home=gpg_home)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.option("--directory", "directory", envvar="WFC_DIRECTORY", default=None, type=click.Path(path_type=Path),
              help="A folder of <account>.yaml directory files: check references as the controller does.")
@click.pass_obj
def validate(settings: Settings, paths: tuple[Path, ...], fmt: str, directory: Path | None) -> None:
    """Check workflow files offline (default: the whole root). Exit 1 when any is invalid."""
    if "://" in settings.repo:
        fail("validate reads a checkout; pass --repo PATH (a working tree), not a URL")
    from controller.check.cases import check_test_files, test_files

    top = Path(settings.repo)
    from controller.reconcile.directories import NOT_CHECKED, load_directories
    from controller.reconcile.validate import validate_tree

    directories = load_directories(directory) if directory is not None else None
    report = validate_tree(top, settings.root, paths, directories)
    if directories is None:
        click.echo(f"note: {NOT_CHECKED}", err=True)
    tests = test_files(top, settings.root, paths)
    report = replace(report, files=report.files + len(tests),
                     problems=report.problems + tuple(check_test_files(top.resolve(), tests)))
    if fmt == "json":
        emit({"valid": report.ok, "files": report.files, "problems": [_problem(p) for p in report.problems],
              "warnings": [_problem(p) for p in report.warnings]})
    elif fmt == "github":
        for level, found in (("error", report.problems), ("warning", report.warnings)):
            for p in found:
                click.echo(f"::{level} file={p.path},line={max(p.line, 1)},col={max(p.column, 1)}::"
                           f"{(p.field + ': ' if p.field else '') + p.message}")
    else:
        for p in report.warnings:  # a refused-by-default URL: the configuration may allow it
            click.echo(f"warning: {p}", err=True)
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
    from controller.store import views

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
        emit({"base": result.base, "head": result.head.sha, "full": result.full, "workflows": rows})
    elif not rows:
        click.echo(f"nothing to do at {result.head.sha[:12]}")
    else:
        for r in rows:
            detail = ", ".join(f"v{v['version']} {v['commit'][:7]} {v['summary']!r}" for v in r["versions"])
            click.echo(f"{r['action']:<8} {r['id']}  {detail or r['message']}")
    sys.exit(1 if rows else 0)


def _plan_rows(result: Plan) -> list[dict[str, Any]]:
    from controller.reconcile.plan import BlockedOp, VersionOp

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
    from controller.store import views

    with settings.reconciler() as reconciler:
        result = reconciler.sync()
        ensure_webhook_secrets(reconciler.store, settings)
        with reconciler.store.read() as conn:
            not_ready = views.not_ready(conn)
    rows = _plan_rows(result)
    if as_json:
        emit({"base": result.base, "head": result.head.sha, "full": result.full, "applied": rows,
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
    from controller.store import leadership, views

    store = settings.open_store()
    try:
        with store.read() as conn:
            state = views.status(conn)
            state["replicas"] = leadership.recent(conn)
    finally:
        store.close()
    if as_json:
        emit(state)
        return
    source = state["source"]
    ready = next((c for c in source["conditions"] if c["type"] == "Ready"), None)
    click.echo(f"source: {source['location'] or settings.repo} ({source['branch'] or '?'}) "
               f"applied {(source['last_applied_commit'] or 'nothing')[:12]}"
               + (f" - Ready={ready['status']} {ready['reason']}: {ready['message']}" if ready else ""))
    verified = next((c for c in source["conditions"] if c["type"] == "SourceVerified"), None)
    if verified:
        click.echo(f"source: SourceVerified={verified['status']} {verified['reason']}: {verified['message']}")
    for loop in state["loops"]:
        if loop["status"] != "ok":
            click.echo(f"loop {loop['name']} of {loop['owner']}: {loop['status']}, {loop['failures']} failed pass(es) "
                       f"since {loop['failing_since']}: {loop['error']}")
    if state["loops"] and all(loop["status"] == "ok" for loop in state["loops"]):
        click.echo(f"loops: {len(state['loops'])} reporting, all ok")
    for replica in state["replicas"]:
        click.echo(f"replica {replica['id']} on {replica['host']}: {replica['role']}, "
                   f"last heartbeat {replica['heartbeat_at']} ({replica['age']:g}s ago)")
    for w in state["workflows"]:
        version = f"v{w['version']}" if w["version"] else "-"
        enabled = "" if w["enabled"] else " (disabled)"
        if w["suspended"]:
            enabled += f" (suspended: {w['suspended']['reason']}; `wfctl resume {w['id']}`)"
        click.echo(f"{w['sync']:<8} {version:<5} {w['id']}{enabled}" + (f"  {w['message']}" if w["message"] else ""))


@cli.command()
@click.argument("workflow")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def history(settings: Settings, workflow: str, as_json: bool) -> None:
    """List the versions of ACCOUNT/NAME, newest first."""
    from controller.store import views

    rows = read(settings, lambda conn: views.history(conn, key_arg(workflow)))
    if as_json:
        emit(rows)
        return
    for r in rows:
        restored = f" (restored from v{r['restored_from']})" if r["restored_from"] else ""
        signed = f"  signed by {r['signer']} ({r['signing_key']})" if r["signing_key"] else ""
        click.echo(f"v{r['version']:<4} {r['commit'][:7]} {r['committed_at']} {r['author']} <{r['author_email']}>  "
                   f"{r['summary']}{restored}{signed}")


@cli.command()
@click.argument("workflow")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def audit(settings: Settings, workflow: str, as_json: bool) -> None:
    """List the audit events of ACCOUNT/NAME with field-level changes, newest first."""
    from controller.store import views

    rows = read(settings, lambda conn: views.audit(conn, key_arg(workflow)))
    if as_json:
        emit(rows)
        return
    for r in rows:
        version = f"v{r['version']}" if r["version"] else "-"
        commit = (r["commit"] or "")[:7]
        signed = f" (signed by {r['signer']}, {r['signing_key']})" if r["signing_key"] else ""
        click.echo(f"{r['at']} {r['action']:<9} {version:<5} {commit} {r['actor']}{signed}  {r['message']}")
        for change in r["changes"]:
            click.echo(f"    {change['path']}: {json.dumps(change['old'])} -> {json.dumps(change['new'])}")


@cli.command()
@click.argument("workflow")
@click.option("--to", "version", type=int, required=True, help="The version to restore (see `wfctl history`).")
@click.option("--message", "note", default=None, help="A note for the commit body.")
@click.option("--controller", "controller_url", default=None, metavar="URL",
              help="Ask this running controller which executions are in flight (instead of --db).")
@click.option("--token", default=None, envvar="WFC_TOKEN", help="API token for --controller (workflow.read).")
@click.pass_obj
def restore(settings: Settings, workflow: str, version: int, note: str | None, controller_url: str | None,
            token: str | None) -> None:
    """Commit VERSION's content of ACCOUNT/NAME to the checkout (refused while executions are in flight)."""
    from controller.reconcile.restore import restore as do_restore

    if "://" in settings.repo:
        fail("restore commits in a checkout; pass --repo PATH (a working tree), not a URL")
    if controller_url:
        from controller.check.live import ControllerClient

        if not token:
            fail("--controller needs --token (an API token with workflow.read)")
        done = do_restore(Path(settings.repo), key_arg(workflow), version, note, live=ControllerClient(controller_url, token))
    else:
        store = settings.open_store()
        try:
            done = do_restore(Path(settings.repo), key_arg(workflow), version, note, store=store)
        finally:
            store.close()
    click.echo(f"committed {done.commit[:12]} {done.path}: Restore {workflow} to version {version}; push it or "
               f"open a pull request")


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


for _module in (cli_engine, cli_check, cli_metrics, cli_portable, cli_web):
    _module.register(cli)


def main() -> None:
    """The ``wfctl`` process (not CliRunner's in-process calls, which must leave the caller's collector alone)."""
    try:
        cli(prog_name="wfctl")
    finally:
        # The process ends here. Its last collections would walk every object the imports made, ~80,000 of
        # them (~0.05 s quiet, several times that under load: a one-file sync's biggest step after the
        # imports); frozen, they are skipped, and the exit frees the memory. Every transaction has committed
        # and the store and the git processes are closed by then.
        gc.freeze()
