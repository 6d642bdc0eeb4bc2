"""`wfctl` commands of the engine: run, executions, records, directory, mail, serve."""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any

import click

from controller.cli_common import actor, emit, fail, json_file, key_arg, open_engine, read, record_ref, utcnow
from controller.model.ids import ID_MAX
from controller.model.statuses import NAMES
from controller.settings import Settings

EXECUTION_ID = click.IntRange(1, ID_MAX)


@click.command()
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

    key = key_arg(workflow)
    body = json_file(payload) if payload else None
    store, engine = open_engine(settings)
    try:
        execution_id = start_now(engine, key, record=record_ref(record) if record else None, payload=body)
        if not wait_:
            emit({"execution_id": execution_id}) if as_json else click.echo(execution_id)
            return
        from controller.engine.starting import run_to_end

        result = run_to_end(engine, execution_id)
    finally:
        store.close()
    if as_json:
        emit(result)
    else:
        click.echo(f"execution {execution_id} {result['status']}" + (f": {result['error']}" if result["error"] else ""))
    sys.exit(0 if result["status"] == "succeeded" else 1)




@click.group()
def executions() -> None:
    """List, inspect, retry and cancel executions."""


@executions.command("list")
@click.option("--workflow", default=None, metavar="ACCOUNT/NAME")
@click.option("--status", type=click.Choice(NAMES))
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def executions_list(settings: Settings, workflow: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Executions, newest first."""
    from controller.store import views

    rows = read(settings, lambda conn: views.executions_list(conn, workflow=workflow, status=status, limit=limit))
    if as_json:
        emit(rows)
        return
    for r in rows:
        duration = f"{r['duration_ms']}ms" if r["duration_ms"] is not None else "-"
        click.echo(f"{r['id']:>6} {r['status']:<10} {r['workflow']} v{r['version'] or '-'} {r['created_at']} "
                   f"{duration}" + (f"  {r['error']}" if r["error"] else ""))


@executions.command("show")
@click.argument("execution_id", type=EXECUTION_ID)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def executions_show(settings: Settings, execution_id: int, as_json: bool) -> None:
    """One execution with its per-action trace: a tree of the steps with their resolved input and output."""
    from controller.store import views

    def trace(conn: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
        data = views.execution(conn, execution_id)
        if as_json or not data["version"]:  # a queued execution has no version yet: its steps are listed flat
            return data, None
        return data, views.version_content(conn, data["workflow"], data["version"])["content"]

    data, definition = read(settings, trace)
    if as_json:
        emit(data)
        return
    from controller.cli_trace import colour_wanted, render

    for line in render(data, definition, colour=colour_wanted()):
        click.echo(line)


@executions.command("retry")
@click.argument("execution_id", type=EXECUTION_ID)
@click.option("--latest", is_flag=True, help="Run on the workflow's latest version, not the original's.")
@click.pass_obj
def executions_retry(settings: Settings, execution_id: int, latest: bool) -> None:
    """Start a new execution with the original's trigger input."""
    store, engine = open_engine(settings)
    try:
        click.echo(engine.retry(execution_id, latest=latest))
    finally:
        store.close()


@executions.command("cancel")
@click.argument("execution_id", type=EXECUTION_ID)
@click.pass_obj
def executions_cancel(settings: Settings, execution_id: int) -> None:
    """Terminate an execution (a running one at its next step)."""
    store, engine = open_engine(settings)
    try:
        click.echo(f"execution {execution_id} {engine.cancel(execution_id)}")
    finally:
        store.close()


@click.group()
def records() -> None:
    """Write records of the built-in record store (fires record triggers); a record's trigger timeline."""


def _record_write(settings: Settings, action: str, *args: Any) -> None:
    from controller.engine.records import RecordService

    store, engine = open_engine(settings)
    try:
        service = RecordService(engine)
        record = getattr(service, action)(*args)
    finally:
        store.close()
    emit({"record": record, "executions": service.started})


def _data_option(data: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as e:
        fail(f"--data is not JSON: {e}")
    if not isinstance(value, dict):
        fail("--data must be a JSON object")
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
    entity, record_id = record_ref(ref)
    _record_write(settings, "update", account, entity, record_id, _data_option(data))


@records.command("delete")
@click.argument("ref", metavar="TYPE:ID")
@click.option("--account", required=True)
@click.pass_obj
def records_delete(settings: Settings, ref: str, account: str) -> None:
    """Delete a record and fire `deleted` triggers."""
    entity, record_id = record_ref(ref)
    _record_write(settings, "delete", account, entity, record_id)


@records.command("timeline")
@click.argument("ref", metavar="TYPE:ID")
@click.option("--account", required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def records_timeline(settings: Settings, ref: str, account: str, as_json: bool) -> None:
    """What each trigger decided about the record, newest first: started, filtered, dropped, refused."""
    from controller.store import decisions

    entity, record_id = record_ref(ref)
    rows = read(settings, lambda conn: decisions.record_timeline(conn, account, entity, record_id))
    if as_json:
        emit(rows)
        return
    if not rows:
        click.echo(f"no trigger has decided on {ref} yet")
    for row in rows:
        execution = f" -> execution {row['execution_id']}" if row["execution_id"] is not None else ""
        click.echo(f"{row['at']}  {row['workflow']} v{row['version'] or '-'}  {row['trigger']:<10} "
                   f"{row['decision']:<8}{execution}" + (f"  {row['reason']}" if row["reason"] else ""))


@click.group()
def directory() -> None:
    """The account directory: users, mailboxes, channels, object types."""


@directory.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--account", required=True)
@click.pass_obj
def directory_load(settings: Settings, file: Path, account: str) -> None:
    """Replace the account's directory with FILE (YAML or JSON), in one transaction."""
    from controller.model import yamlfile
    from controller.model.directory import parse_directory
    from controller.safeguards import suspension

    text = yamlfile.decode(file.read_bytes(), str(file), max_bytes=yamlfile.MAX_DATA_FILE_BYTES)
    entries = parse_directory(text, str(file))
    config = settings.config()
    store = settings.open_store()
    try:
        with store.tx() as conn:
            counts, suspended = suspension.replace(conn, config, account, entries, utcnow())
    finally:
        store.close()
    click.echo(f"directory of {account}: " + ", ".join(f"{n} {kind}(s)" for kind, n in sorted(counts.items())))
    _suspended(suspended)


@directory.command("set-status")
@click.argument("ref", metavar="KIND:ID")
@click.argument("status")
@click.option("--account", required=True)
@click.pass_obj
def directory_set_status(settings: Settings, ref: str, status: str, account: str) -> None:
    """Change one entry's status (active, deactivated, deleted, disconnected)."""
    from controller.safeguards import suspension

    config = settings.config()
    store = settings.open_store()
    try:
        with store.tx() as conn:
            entry, suspended = suspension.set_status(conn, config, account, ref, status, utcnow())
    finally:
        store.close()
    click.echo(f"{entry.ref} is {entry.status}")
    _suspended(suspended)


def _suspended(keys: list[str]) -> None:
    for key in keys:
        click.echo(f"suspended {key} (it depends on it); `wfctl resume {key}` once it is active again")


@click.group()
def mail() -> None:
    """Inbound mail for `email` triggers."""


@mail.command("deliver")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--account", required=True)
@click.option("--mailbox", required=True, metavar="mailbox:ID")
@click.pass_obj
def mail_deliver(settings: Settings, file: Path, account: str, mailbox: str) -> None:
    """Hand FILE (.eml) to the workflows listening on the mailbox; prints the executions started."""
    from controller.engine.triggers import email

    store, engine = open_engine(settings)
    try:
        with store.tx() as conn:
            started = email.deliver(engine, conn, account, mailbox, file.read_bytes())
    finally:
        store.close()
    emit({"executions": started})


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Where the HTTP service listens.")
@click.option("--port", envvar="WFC_PORT", default=8080, show_default=True, type=int)
@click.option("--interval", default=60.0, show_default=True, type=float, help="Seconds between reconcile passes.")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(min=1),
              help="Worker threads (in each worker process, when there are any).")
@click.option("--worker-processes", type=click.IntRange(min=0), default=None,
              help="Processes that run the workers beside the HTTP service (0: threads of this process) "
                   "[default: one per core beyond the first]")
@click.option("--lease", default=60.0, show_default=True, type=float, help="Seconds a worker's claim lasts.")
@click.option("--lease-ttl", envvar="WFC_LEASE_TTL", default=15.0, show_default=True,
              type=click.FloatRange(min=0.1),
              help="Seconds the leader lease lasts unrenewed: another replica takes over within this "
                   "and a third of it when the leader dies (renewed every third of it).")
@click.pass_obj
def serve(settings: Settings, host: str, port: int, interval: float, workers: int, worker_processes: int | None,
          lease: float, lease_ttl: float) -> None:
    """Run the controller: HTTP service, reconcile loop, scheduler and workers, until SIGTERM."""
    import signal

    from controller import processes

    config = settings.config()  # a bad configuration stops serve before it starts anything
    verification = settings.verification(config)
    _check_host(host)
    if worker_processes is None:
        worker_processes = processes.default_count()
    if worker_processes:
        processes.share_counters(settings.data_path())  # before the counters exist (prometheus_client's rule)
    processes.tune()

    from controller.reconcile.reconciler import Reconciler
    from controller.security.secrets import SecretBox, ensure_webhook_secrets
    from controller.service import Controller, ServeOptions
    from webhooks import create_app, start_server

    store = settings.open_store()
    engine = settings.engine(store, lease_seconds=lease, config=config)
    box = SecretBox.for_settings(settings)
    with settings.open_source() as source:
        options = ServeOptions.of(config, interval=interval, workers=workers, lease_ttl=lease_ttl)
        children = processes.WorkerProcesses(settings, options, lease, worker_processes) if worker_processes else None
        reconciler = Reconciler(source, store, location=settings.repo, verification=verification)
        controller = Controller(reconciler, engine, options,
                                after_sync=lambda: ensure_webhook_secrets(store, box), processes=children)
        try:
            http = start_server(create_app(settings, store, engine, controller=controller), host, port,
                                threads=processes.HTTP_THREADS)
        except (OSError, ValueError) as e:
            fail(f"cannot listen on {host}:{port}: {getattr(e, 'strerror', None) or e}; pass --host or --port")
        stopping = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            logging.getLogger("wfctl").info("signal %d: stopping", signum)
            stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        controller.start()
        where = f"in {worker_processes} worker process(es)" if worker_processes else "in this process"
        click.echo(f"wfctl serving {settings.repo} on {http.url} with {workers} worker thread(s) {where}; "
                   f"reconcile every {interval:g}s", err=True)
        while not stopping.wait(0.5):
            pass
        http.stop()
        controller.stop()
    store.close()


def _check_host(host: str) -> None:
    """The address to listen on must resolve (a typo like 256.1.1.1 is caught before anything starts)."""
    import socket

    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as e:
        fail(f"--host {host!r} is not an address this machine can listen on ({e}); e.g. 127.0.0.1 or 0.0.0.0")


@click.command()
@click.option("--account", default=None, help="Only this account's.")
@click.option("--open", "open_only", is_flag=True, help="Only open alerts.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def alerts(settings: Settings, account: str | None, open_only: bool, as_json: bool) -> None:
    """Alerts, newest first: rate-limit drops, burst failures, suspensions."""
    from controller.safeguards import alerts as alert_store

    found = read(settings, lambda conn: alert_store.listing(conn, account=account, open_only=open_only))
    if as_json:
        emit({"alerts": found})
        return
    if not found:
        click.echo("no alerts" + (" open" if open_only else ""))
    for alert in found:
        click.echo(f"{alert['last_at'][:19]}  {alert['status']:<8}  {alert['kind']:<9}  {alert['workflow']:<36}  "
                   f"x{alert['count']}  {alert['summary']}")


@click.command()
@click.argument("workflow")
@click.pass_obj
def resume(settings: Settings, workflow: str) -> None:
    """Resume a workflow the controller suspended, once what it depends on is active again."""
    from controller.safeguards import suspension

    key = key_arg(workflow)
    store = settings.open_store()
    try:
        with store.tx() as conn:
            done = suspension.resume(conn, key, actor=actor(), now=utcnow())
    finally:
        store.close()
    click.echo(f"resumed {key} (it was suspended: {done['was']['reason']})")


def register(cli: click.Group) -> None:
    """Add this module's commands to the `wfctl` group."""
    for command in (run, executions, records, directory, mail, serve, alerts, resume):
        cli.add_command(command)
