"""`wfctl export`, `wfctl import` and `wfctl promote`: workflows across accounts, with bindings.

Export reads applied definitions and the directory from the store; import and promote plan against
the target account's directory in the store and its workflows in this checkout (and the store),
write disabled workflow files under ``<root>/<account>/``, and with ``--commit`` make one commit.
Exit 1 while a binding is open or invalid, a name clashes or a call cycle would form: nothing is
written then. Exit 3 when the ``workflow_import_export`` flag is off.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from controller.cli_common import emit, fail, key_arg, read, utcnow
from controller.settings import Settings


@click.command("export")
@click.argument("workflow", metavar="ACCOUNT/NAME")
@click.option("--with-dependencies", is_flag=True, help="Include the workflows it calls, transitively.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write here, not stdout.")
@click.pass_obj
def export_command(settings: Settings, workflow: str, with_dependencies: bool, output: Path | None) -> None:
    """Export a workflow as a document with every account reference made a binding."""
    from controller import portable
    from controller.portable import document

    key = key_arg(workflow)
    settings.config().require_portable(key.split("/", 1)[0])
    text = document.dumps(read(settings, lambda conn: portable.export_document(conn, key, with_dependencies)))
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"exported {key} to {output}", err=True)


def _import_options(command: Any) -> Any:
    for option in reversed([
        click.option("--bind", "binds", multiple=True, metavar="NAME=KIND:ID", help="Resolve one binding."),
        click.option("--bindings", "bindings_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     default=None, help="A YAML map NAME: KIND:ID (per environment)."),
        click.option("--match", type=click.Choice(["name"]), default=None,
                     help="Resolve open bindings to the target of the same kind whose name or address is the hint."),
        click.option("--commit", "make_commit", is_flag=True, help="Commit the written files."),
        click.option("--dry-run", is_flag=True, help="Print the plan only; exit 1 while a binding is open."),
        click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON."),
        click.option("--interactive/--no-interactive", default=None,
                     help="Ask for each open binding (default: when stdin is a terminal and no --bind is given)."),
    ]):
        command = option(command)
    return command


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--account", required=True, help="The target account.")
@click.option("--rename", "renames", multiple=True, metavar="OLD=NEW", help="Import a workflow under another name.")
@_import_options
@click.pass_obj
def import_command(settings: Settings, file: Path, account: str, renames: tuple[str, ...], binds: tuple[str, ...],
                   bindings_path: Path | None, match: str | None, make_commit: bool, dry_run: bool,
                   as_json: bool, interactive: bool | None) -> None:
    """Import an exported document into ACCOUNT: files under <root>/ACCOUNT/, disabled until reviewed."""
    from controller.model import yamlfile
    from controller.portable import document

    text = yamlfile.decode(file.read_bytes(), str(file), max_bytes=yamlfile.MAX_DATA_FILE_BYTES)
    parsed = document.parse(text, str(file))
    _import(settings, parsed, account, source=file.name, renames=renames, binds=binds, bindings_path=bindings_path,
            match=match, make_commit=make_commit, dry_run=dry_run, as_json=as_json, interactive=interactive)


@click.command("promote")
@click.argument("workflow", metavar="SRC_ACCOUNT/NAME")
@click.option("--to", "account", required=True, help="The target account.")
@click.option("--with-dependencies", is_flag=True, help="Include the workflows it calls, transitively.")
@_import_options
@click.pass_obj
def promote_command(settings: Settings, workflow: str, account: str, with_dependencies: bool, binds: tuple[str, ...],
                    bindings_path: Path | None, match: str | None, make_commit: bool, dry_run: bool,
                    as_json: bool, interactive: bool | None) -> None:
    """Export SRC_ACCOUNT/NAME and import it into --to in one step, in this repository."""
    from controller import portable

    key = key_arg(workflow)
    settings.config().require_portable(key.split("/", 1)[0])
    parsed = read(settings, lambda conn: portable.export_document(conn, key, with_dependencies))
    _import(settings, parsed, account, source=key, renames=(), binds=binds, bindings_path=bindings_path, match=match,
            make_commit=make_commit, dry_run=dry_run, as_json=as_json, interactive=interactive)


def _import(settings: Settings, parsed: dict[str, Any], account: str, *, source: str, renames: tuple[str, ...],
            binds: tuple[str, ...], bindings_path: Path | None, match: str | None, make_commit: bool, dry_run: bool,
            as_json: bool, interactive: bool | None) -> None:
    from controller import portable
    from controller.model import yamlfile
    from controller.portable import document, files

    settings.config().require_portable(account)
    if "://" in settings.repo:
        fail("import writes into a checkout: run it in the workflow repository (--repo PATH), not against a URL")
    given: dict[str, tuple[str, str]] = {}
    if bindings_path is not None:
        text = yamlfile.decode(bindings_path.read_bytes(), str(bindings_path), max_bytes=yamlfile.MAX_DATA_FILE_BYTES)
        given.update(portable.bindings_file(yamlfile.parse(text, str(bindings_path)), str(bindings_path)))
    explicit = dict(portable.parse_binding(b, "--bind") for b in binds)
    given.update(explicit)  # (a --bindings file is per environment: names this document lacks are fine)
    rename_map = {}
    for text in renames:
        old, (new, _) = portable.parse_binding(text, "--rename")
        rename_map[old] = new
    folder = files.account_folder(Path(settings.repo), settings.root, account)
    entries, applied = read(settings, lambda conn: portable.target_state(conn, account))
    existing = {**applied, **files.existing(folder)}
    unknown = sorted(set(explicit) - {b["name"] for b in parsed["bindings"]})
    if unknown:
        fail(f"no binding {', '.join(unknown)} in the document (it has "
             f"{', '.join(b['name'] for b in parsed['bindings']) or 'none'})")
    plan = document.plan(parsed, account, entries=entries, existing=existing, given=given, match_names=match == "name",
                         renames=rename_map)
    if interactive is None:
        interactive = sys.stdin.isatty() and not binds and not (dry_run or as_json)
    if interactive and not plan.ok:
        given.update(_ask(plan, entries, existing))
        plan = document.plan(parsed, account, entries=entries, existing=existing, given=given,
                             match_names=match == "name", renames=rename_map)
    if as_json:
        emit(plan.view())
    else:
        _print(plan, folder)
    if not plan.ok:
        open_ = sum(1 for r in plan.resolutions if r.problem)
        fail(f"not imported: {open_} binding(s) open or invalid, {len(plan.problems)} other problem(s); nothing was "
             f"written", 1)
    if dry_run:
        return
    written = files.write(plan, folder, source=source, now=utcnow())
    for path in written:
        click.echo(f"wrote {path} (disabled)", err=True)
    if make_commit:
        sha = files.commit(Path(settings.repo), written,
                           f"Import {', '.join(sorted(n.removesuffix('.yaml') for n in plan.files))} into {account}\n\n"
                           f"From {source} (a wfctl export); disabled until reviewed.")
        click.echo(f"committed {sha[:12]}", err=True)


def _ask(plan: Any, entries: Any, existing: Any) -> dict[str, tuple[str, str]]:
    """For each open or invalid binding, the target a person picks from the target account's candidates."""
    picked: dict[str, tuple[str, str]] = {}
    for r in plan.resolutions:
        if not r.problem:
            continue
        if r.kind == "workflow":
            options = sorted(existing)
        else:
            options = sorted(ref for ref, e in entries.items() if e.kind == r.kind and e.active)
        if not options:
            click.echo(f"{r.name} ({r.kind}, hint {r.hint or '-'}): no active {r.kind} in the target account", err=True)
            continue
        click.echo(f"{r.name}: a {r.kind} (hint: {r.hint or '-'}); {r.problem}", err=True)
        for number, option in enumerate(options, 1):
            label = entries[option].name if option in entries else option
            click.echo(f"  {number}) {option}  {label}", err=True)
        choice = click.prompt("  pick", type=click.IntRange(1, len(options)), err=True)
        picked[r.name] = (options[choice - 1], "asked")
    return picked


def _print(plan: Any, folder: Path) -> None:
    click.echo(f"import into {plan.account}:")
    for r in plan.resolutions:
        target = f"-> {r.target} ({r.how})" if r.target else ""
        state = f"  PROBLEM: {r.problem}" if r.problem else ""
        click.echo(f"  binding {r.name:<14} {r.kind:<11} {target}{state}  hint: {r.hint or '-'}")
    for name in sorted(plan.files):
        click.echo(f"  file {folder / name} (spec.enabled: false)")
    for problem in plan.problems:
        click.echo(f"  PROBLEM: {problem}")
    if plan.ok:
        click.echo("ok: every binding is resolved")


def register(cli: click.Group) -> None:
    """Add this module's commands to the `wfctl` group."""
    for command in (export_command, import_command, promote_command):
        cli.add_command(command)
