"""Portable workflows: export with symbolic bindings, import into another account, promote.

Where it sits: :mod:`.document` is the pure core (export, parse, plan); this module reads what it
needs from the store, the same for ``wfctl`` and the HTTP API; :mod:`.files` writes a plan into a
checkout. Exports and imports are behind the ``workflow_import_export`` feature flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from controller.errors import NotFoundError, UsageError
from controller.store import directory as store_directory
from controller.store.tables import workflow_versions, workflows


def definitions(conn: Connection, key: str, dependencies: bool) -> dict[str, dict[str, Any]]:
    """The applied definition of ``key`` (first), and with ``dependencies`` every workflow it calls,
    transitively, in its account: name -> normalized definition."""
    from controller.reconcile.rules import call_sites

    account, _, name = key.partition("/")
    found: dict[str, dict[str, Any]] = {}
    pending = [name]
    while pending:
        current = pending.pop(0)
        if current in found:
            continue
        content = _content(conn, account, current)
        if content is None:
            if current == name:
                raise NotFoundError(f"no workflow {key!r} with a valid version; see `wfctl status`", workflow=key)
            continue  # a call to a workflow that is gone: it stays a binding
        found[current] = content
        if dependencies:
            pending += [target for _, target in call_sites(content)]
    return found


def export_document(conn: Connection, key: str, dependencies: bool) -> dict[str, Any]:
    from controller.portable import document

    account = key.split("/", 1)[0]
    entries = store_directory.snapshot(conn, [account]).get(account, {})
    return document.export(definitions(conn, key, dependencies), entries, dependencies)


def target_state(conn: Connection, account: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The target account's directory (ref -> entry) and applied workflows (name -> calls)."""
    entries = store_directory.snapshot(conn, [account]).get(account)
    if entries is None:
        raise UsageError(f"account {account!r} has no directory in the store; load it first (`wfctl directory load "
                         f"FILE --account {account}`): bindings are checked against it")
    w = workflows.c
    existing = {name: list(calls or []) for name, calls in conn.execute(
        select(w.name, w.calls).where(w.account == account, w.deleted.is_(False)))}
    return entries, existing


def parse_binding(text: str, how: str) -> tuple[str, tuple[str, str]]:
    """``NAME=KIND:ID`` -> (name, (target, how))."""
    name, sep, target = text.partition("=")
    if not sep or not name.strip() or not target.strip():
        raise UsageError(f"{how} {text!r}: expected NAME=KIND:ID, e.g. mailbox-1=mailbox:mb_support")
    return name.strip(), (target.strip(), how)


def bindings_file(raw: Any, path: str) -> dict[str, tuple[str, str]]:
    """A ``--bindings`` YAML map ``NAME: KIND:ID``."""
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise UsageError(f"{path}: expected a map of binding names to KIND:ID, e.g. 'mailbox-1: mailbox:mb_support'")
    return {name: (target, "--bindings") for name, target in raw.items()}


def _content(conn: Connection, account: str, name: str) -> dict[str, Any] | None:
    w, v = workflows.c, workflow_versions.c
    row = conn.execute(select(v.content).join(workflows, (v.workflow_id == w.id) & (v.version == w.version))
                       .where(w.account == account, w.name == name, w.deleted.is_(False))).first()
    return dict(row.content) if row is not None else None
