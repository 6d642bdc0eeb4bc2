"""`wfctl webhook rotate` and `wfctl token create|revoke|list`: the HTTP service's credentials.

A new secret or token is printed once, alone on stdout (so ``$(wfctl token create ...)`` captures
it), with what it is on stderr; ``--json`` prints both as one object. The store keeps only the
encrypted secret and the token's hash: neither can be shown again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from controller.cli_common import actor, emit, key_arg
from controller.model.permissions import PERMISSIONS
from controller.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Connection


@contextmanager
def _store(settings: Settings, *, write: bool = True) -> Iterator[Connection]:
    store = settings.open_store()
    try:
        with store.tx() if write else store.read() as conn:
            yield conn
    finally:
        store.close()


@click.group()
def webhook() -> None:
    """Webhook signing secrets."""


@webhook.command("rotate")
@click.argument("workflow", metavar="ACCOUNT/NAME")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def webhook_rotate(settings: Settings, workflow: str, as_json: bool) -> None:
    """Make a new signing secret for a webhook workflow and print it once; the old one stops working now."""
    from controller.security import secrets

    box = secrets.SecretBox.for_settings(settings)
    with _store(settings) as conn:
        rotated = secrets.rotate(conn, box, key_arg(workflow), actor=actor(), now=datetime.now(UTC))
    if as_json:
        emit(rotated.view())
        return
    click.echo(rotated.secret)
    click.echo(f"new signing secret of {workflow} (generation {rotated.info.generation}, {rotated.info.fingerprint}); "
               f"it is shown only this once, and the previous secret no longer works", err=True)


@click.group()
def token() -> None:
    """API tokens: bearer credentials for one account and a set of permissions."""


@token.command("create")
@click.option("--account", required=True)
@click.option("--user", "user", required=True, metavar="USER_ID", help="The user the token acts for (e.g. u_alice).")
@click.option("--permissions", required=True, metavar="P1,P2",
              help=f"Comma-separated, from: {', '.join(PERMISSIONS)}.")
@click.option("--name", default=None, help="A name to revoke it by (unique among the account's active tokens).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def token_create(settings: Settings, account: str, user: str, permissions: str, name: str | None,
                 as_json: bool) -> None:
    """Create a token and print it once; only its hash is stored."""
    from controller.security import tokens

    with _store(settings) as conn:
        made = tokens.create(conn, account, user, permissions, datetime.now(UTC), name=name)
    if as_json:
        emit(made.view())
        return
    click.echo(made.bearer)
    label = f" {made.token.name!r}" if made.token.name else ""
    click.echo(f"token {made.token.id}{label} of account {account} for {user}: "
               f"{_permissions(made.token.view())}; it is shown only this once", err=True)


@token.command("revoke")
@click.argument("token_ref", metavar="TOKEN_ID_OR_NAME")
@click.option("--account", required=True)
@click.pass_obj
def token_revoke(settings: Settings, token_ref: str, account: str) -> None:
    """Revoke a token by id or name; it stops working at once."""
    from controller.security import tokens

    with _store(settings) as conn:
        gone = tokens.revoke(conn, account, token_ref, datetime.now(UTC))
    label = f" {gone.name!r}" if gone.name else ""
    click.echo(f"revoked token {gone.id}{label} of account {account} ({gone.user})")


@token.command("list")
@click.option("--account", required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def token_list(settings: Settings, account: str, as_json: bool) -> None:
    """The account's tokens, newest first (never the tokens themselves)."""
    from controller.security import tokens

    with _store(settings, write=False) as conn:
        rows = tokens.list_tokens(conn, account)
    if as_json:
        emit(rows)
        return
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        click.echo(f"{row['id']:>5} {row['name'] or '-':<20} {row['user']:<16} {state:<10} {_permissions(row)}")


def _permissions(token: dict[str, Any]) -> str:
    """The effective permissions, and what the directory took away from the granted ones."""
    shown = ",".join(token["permissions"]) or "(none)"
    if token["granted"] != token["permissions"]:
        shown += f" (granted {','.join(token['granted'])}; the user's directory entry holds no more)"
    return shown


def register(cli: click.Group) -> None:
    """Add this module's commands to the `wfctl` group."""
    cli.add_command(webhook)
    cli.add_command(token)
