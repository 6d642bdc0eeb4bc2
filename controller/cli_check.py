"""`wfctl dry-run` and `wfctl check`: zero-side-effect runs and the pull-request check."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from controller.cli_common import emit, fail, record_ref
from controller.settings import Settings


@click.command("dry-run")
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
        fail("pass --entity or --record, not both")
    result = run_dry(settings, target, entity=entity, record=record_ref(record) if record else None)
    if as_json:
        emit(result.view())
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


@click.command()
@click.option("--base", default=None, metavar="REF", help="Compare with this commit or branch (the PR's target).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github", "junit", "markdown"]), default="text",
              show_default=True, help="markdown: a pull-request comment.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report here instead of standard output.")
@click.option("--controller", "controller_url", default=None, metavar="URL",
              help="A live controller: whether a restore would be held back now, and its account directory.")
@click.option("--token", default=None, envvar="WFC_TOKEN",
              help="API token for --controller (workflow.read; workflow.replay to see values in the impact preview).")
@click.option("--replay", "replay_limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Impact preview: replay the last N events of each changed workflow on --controller.")
@click.option("--replay-since", default=None, metavar="DURATION", help="Replay only events this recent (24h, 7d).")
@click.option("--replay-like", default=None, metavar="ACCOUNT/NAME",
              help="For a workflow with no events of its own (a new one): replay this workflow's.")
@click.option("--directory", "directory", envvar="WFC_DIRECTORY", default=None,
              type=click.Path(path_type=Path), help="A folder of <account>.yaml directory files: check references.")
@click.pass_obj
def check(settings: Settings, base: str | None, fmt: str, output: Path | None, controller_url: str | None,
          token: str | None, replay_limit: int | None, replay_since: str | None, replay_like: str | None,
          directory: Path | None) -> None:
    """What CI runs on a pull request: validate, plan against --base, dry-run what changed; with --replay,
    what would change for the workflows' recent real events. Exit 1 when something fails."""
    from controller.check.check import run_check
    from controller.check.report import render
    from controller.engine.clock import SystemClock
    from controller.reconcile.directories import load_directories

    lookup, directories = None, load_directories(directory) if directory is not None else None
    stand_in = None  # the dry runs' directory: the files' entries, or made up
    replay = None
    replaying = replay_limit is not None or replay_since is not None or replay_like is not None
    if replaying and not controller_url:
        fail("--replay needs --controller URL and --token (the controller keeps the events it replays)")
    if replay_since is not None:
        _duration("--replay-since", replay_since)
    if controller_url:
        if not token:
            fail("--controller needs --token (an API token with workflow.read)")
        from controller.check.live import ControllerClient

        client = ControllerClient(controller_url, token)
        lookup = client.in_flight
        if replaying:
            from controller.check.check import ReplayAsk
            from controller.check.replay import DEFAULT_LIMIT

            replay = ReplayAsk(client.replay, replay_limit or DEFAULT_LIMIT, replay_since, replay_like)
        if directories is None:  # the live directory, unless a folder was given
            from controller.engine.dryrun import SyntheticDirectory

            top = Path(settings.repo) / settings.root
            directories = client.directories(sorted(p.name for p in top.iterdir() if p.is_dir()) if top.is_dir() else [])
            stand_in = SyntheticDirectory()  # the API gives which references exist, not their contact data
    report = run_check(Path(settings.repo), settings.root, base=base, config=settings.config(),
                       now=SystemClock().now, in_flight=lookup, directories=directories, directory=stand_in,
                       replay=replay)
    rendered = render(report, fmt)
    if output is not None:
        output.write_text(rendered)
        click.echo(f"check {'passed' if report.ok else 'FAILED'}; report written to {output}")
    else:
        click.echo(rendered, nl=False)
    sys.exit(0 if report.ok else 1)


def _duration(option: str, value: str) -> None:
    from controller.model.durations import parse_duration

    try:
        parse_duration(value)
    except ValueError as e:
        fail(f"{option} {value!r}: {e}")


def register(cli: click.Group) -> None:
    """Add this module's commands to the `wfctl` group."""
    cli.add_command(dry_run)
    cli.add_command(check)
