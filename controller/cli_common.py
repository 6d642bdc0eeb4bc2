"""What the `wfctl` command modules share: output, one-line failures, argument parsing, opening things."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from controller.settings import Settings

if TYPE_CHECKING:
    from controller.store import Store


def emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"wfctl: error: {message}", err=True)
    sys.exit(code)


def key_arg(workflow: str) -> str:
    account, _, name = workflow.partition("/")
    if not account or not name or "/" in name:
        fail(f"expected ACCOUNT/NAME, got {workflow!r}")
    return workflow


def read(settings: Settings, query: Any) -> Any:
    store = settings.open_store()
    try:
        with store.read() as conn:
            return query(conn)
    finally:
        store.close()



def open_engine(settings: Settings) -> tuple[Store, Any]:
    store = settings.open_store()
    return store, settings.engine(store)


def record_ref(value: str) -> tuple[str, str]:
    from controller.store.records import parse_record_ref

    return parse_record_ref(value)


def json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        fail(f"{path}: not a JSON file ({e})")


def utcnow() -> datetime:
    return datetime.now(UTC)


def actor() -> str:
    """Who the audit trail names for a command: the login name."""
    try:
        return f"{getpass.getuser()} (wfctl)"
    except (OSError, KeyError):  # no login name in this environment (a container without a passwd entry)
        return "wfctl"
