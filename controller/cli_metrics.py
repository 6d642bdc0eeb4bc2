"""`wfctl metrics`: success rate, volume and duration of a workflow (per version), or an account's worst performers.

Reads the rollup buckets of the store (``controller.metrics.windows``), the same figures as
``GET /api/v1/workflows/<a>/<n>/metrics`` and ``GET /api/v1/accounts/<a>/metrics``. Exit 3 when
the account's ``workflow_metrics`` flag is off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from controller.cli_common import emit, fail, key_arg, read, utcnow
from controller.settings import Settings

WINDOW_NAMES = ("24h", "7d", "30d")  # controller.metrics.windows.WINDOWS (not imported: `--help` stays light)


@click.command()
@click.argument("workflow", required=False, metavar="[ACCOUNT/NAME]")
@click.option("--account", default=None, help="The account overview: its worst performers.")
@click.option("--window", "window_name", type=click.Choice(WINDOW_NAMES), default=None,
              help="24h (the default for a workflow), 7d (for an account) or 30d.")
@click.option("--by", "by", type=click.Choice(["version"]), default=None, help="Split a workflow's figures by version.")
@click.option("--min-executions", type=click.IntRange(min=1), default=None,
              help="Executions a workflow needs in the window to be ranked (account overview; default 10).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def metrics(settings: Settings, workflow: str | None, account: str | None, window_name: str | None, by: str | None,
            min_executions: int | None, as_json: bool) -> None:
    """Metrics of ACCOUNT/NAME over a window against the window before, or of --account A."""
    from controller.metrics import windows

    if (workflow is None) == (account is None):
        fail("give ACCOUNT/NAME or --account A (not both)")
    if workflow is not None:
        key = key_arg(workflow)
        if min_executions is not None:
            fail("--min-executions is for the account overview (--account A)")
        settings.config().require_metrics(key.split("/", 1)[0])
        found = read(settings, lambda conn: windows.workflow_metrics(conn, key, window_name or "24h", utcnow(),
                                                                     by_version=by == "version"))
        emit(found) if as_json else _print_workflow(found)
        return
    assert account is not None
    if by is not None:
        fail("--by version is for one workflow (ACCOUNT/NAME)")
    settings.config().require_metrics(account)
    overview = read(settings, lambda conn: windows.account_metrics(
        conn, account, window_name or "7d", utcnow(), min_executions=min_executions or windows.MIN_EXECUTIONS))
    emit(overview) if as_json else _print_account(overview)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _signed(value: float | None, kind: str) -> str:
    if value is None:
        return ""
    if kind == "rate":
        return f" ({value * 100:+.1f} pts)"
    if kind == "seconds":
        return f" ({'+' if value >= 0 else '-'}{_seconds(abs(value))})"
    return f" ({value:+g})"


def _print_workflow(found: Mapping[str, Any]) -> None:
    cur, d = found["current"], found["delta"]
    click.echo(f"{found['workflow']}: last {found['window']} (since {found['from'][:16]}Z), against the {found['window']} "
               f"before")
    lines = [
        ("executions", (f"{cur['executions']} ({cur['succeeded']} succeeded, {cur['failed']} failed, "
                       f"{cur['terminated']} terminated){_signed(d['executions'], 'count')}")),
        ("success rate", _rate(cur["success_rate"]) + _signed(d["success_rate"], "rate")),
        ("active time", (f"avg {_seconds(cur['avg_active_seconds'])}, p50 {_seconds(cur['p50_active_seconds'])}, "
                        f"p95 {_seconds(cur['p95_active_seconds'])}{_signed(d['p95_active_seconds'], 'seconds')}")),
        ("avg wait", _seconds(cur["avg_wait_seconds"]) + _signed(d["avg_wait_seconds"], "seconds")),
        ("failures", ", ".join(f"{k} {v}" for k, v in cur["failures"].items()) or "none"),
        ("not started", f"{cur['dropped']} dropped, {cur['refused']} refused, {cur['filtered']} filtered by when"),
        ("slowest actions", ", ".join(f"{a['action']} ({a['type']}) avg {_seconds(a['avg_seconds'])}"
                                      for a in cur["slowest_actions"]) or "-"),
        ("failing actions", ", ".join(f"{a['action']} ({a['type']}) {a['failures']} of {a['count']}"
                                      for a in cur["failing_actions"]) or "-"),
    ]
    for label, value in lines:
        click.echo(f"  {label:<16} {value}")
    if "versions" in found:
        click.echo("")
        click.echo(f"  {'VERSION':<8} {'COMMIT':<8} {'AUTHOR':<16} {'EXECUTIONS':>10} {'SUCCESS':>8} "
                   f"{'P95 ACTIVE':>10}  SUMMARY")
        for v in found["versions"]:
            click.echo(f"  {v['version']:<8} {(v['commit'] or '-')[:7]:<8} {(v['author'] or '-')[:16]:<16} "
                       f"{v['executions']:>10} {_rate(v['success_rate']):>8} {_seconds(v['p95_active_seconds']):>10}  "
                       f"{v['summary']}")
        for change in found["changes"]:
            click.echo(f"  {change}")


def _print_account(found: Mapping[str, Any]) -> None:
    t, d = found["totals"], found["delta"]
    click.echo(f"account {found['account']}: last {found['window']} (since {found['from'][:16]}Z): {t['executions']} "
               f"executions of {t['workflows']} workflows{_signed(d['executions'], 'count')}, success rate "
               f"{_rate(t['success_rate'])}{_signed(d['success_rate'], 'rate')}, {t['dropped']} dropped")
    sections = ((f"worst (most failures, at least {found['min_executions']} executions)", "worst"),
                ("slowest p95 active time", "slowest"), ("most dropped", "most_dropped"))
    for title, name in sections:
        click.echo(f"\n{title}:")
        rows = found[name]
        if not rows:
            click.echo("  none")
        for r in rows:
            click.echo(f"  {r['workflow']:<40} {r['executions']:>6} runs  {r['failed'] + r['terminated']:>5} failed  "
                       f"success {_rate(r['success_rate']):>6}{_signed(r['delta']['success_rate'], 'rate'):<14} "
                       f"p95 {_seconds(r['p95_active_seconds'])}  dropped {r['dropped']}")


def register(cli: click.Group) -> None:
    """Add this module's commands to the `wfctl` group."""
    cli.add_command(metrics)
