"""`wfctl dry-run`: one workflow, from the store (ACCOUNT/NAME) or the working tree (PATH).

A PATH is dry-run as the file is now, committed or not; its ``workflow.call`` targets come from
the same account folder. ACCOUNT/NAME dry-runs the applied version. The record is a JSON entity
file, a record read from the built-in store (read-only), or a synthetic one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from controller.check.runner import CaseResult, run_case, synthetic_case
from controller.check.synthetic import synthetic_record
from controller.engine.clock import SystemClock
from controller.engine.directory import Directory
from controller.engine.dryrun import DryRunner, SyntheticDirectory
from controller.errors import DefinitionError, NotFoundError, UsageError
from controller.reconcile.validate import validate_tree
from controller.settings import Settings
from controller.store import Store, views
from controller.store import directory as store_directory
from controller.store import records as record_store


def dry_run(settings: Settings, target: str, *, entity: Path | None = None,
            record: tuple[str, str] | None = None, entity_data: dict[str, Any] | None = None) -> CaseResult:
    """Dry-run ``target`` on a record of the store, an entity file or ``entity_data`` (pasted in the
    console), else a made-up record; raises DefinitionError when a PATH is not a valid workflow."""
    store = _open_existing(settings) if record is not None or not _is_path(target) else None
    try:
        if store is not None and not store.is_current():
            raise UsageError(f"the store at {store.safe_url} is empty or outdated; run `wfctl sync` first")
        account, name, definition, definitions = (_from_path(settings, target) if _is_path(target)
                                                   else _from_store(store, target))  # type: ignore[arg-type]
        config = settings.config()
        config.require("workflow_dry_run", account, "dry run is")
        data = _entity(entity) if entity else entity_data
        if record is not None and store is not None:
            with store.read() as conn:
                data = record_store.get(conn, account, record[0], record[1])
        if data is None:
            spec = definition["spec"]["trigger"]
            kind = spec.get("entity") or (spec.get("entities") or [None])[0]
            data = synthetic_record(kind) if kind else None
        runner = DryRunner(account=account, directory=directory_for(store, account), definitions=definitions,
                           now=SystemClock().now, read_record=record_reader(store),
                           outbound=config.outbound(account))
        case = synthetic_case(definition)[0].model_copy(update={"name": "dry-run"})  # made-up inbound mail
        return run_case(runner, name, definition, case, record=data,
                        synthetic=entity is None and record is None and entity_data is None)
    finally:
        if store is not None:
            store.close()


def _open_existing(settings: Settings) -> Store:
    """The store, opened to read; a SQLite file that is not there is not made (zero side effects)."""
    try:
        url = make_url(settings.db_url)
    except ArgumentError:
        return settings.open_store(upgrade=False)  # which says what is wrong with the URL
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database).exists():
        raise UsageError(f"no store at {url.database}; run `wfctl sync` first, or dry-run the file by its path")
    return settings.open_store(upgrade=False)


def _is_path(target: str) -> bool:
    return target.endswith((".yaml", ".yml")) or Path(target).exists()


def _from_path(settings: Settings, target: str) -> tuple[str, str, dict[str, Any], Any]:
    path = Path(target)
    report = validate_tree(Path(settings.repo), settings.root, [path])
    if report.problems:
        raise DefinitionError(list(report.problems))
    mine = next((v for v in report.loaded.values() if Path(v.where.path).resolve() == path.resolve()
                 or (Path(settings.repo) / v.where.path).resolve() == path.resolve()), None)
    if mine is None:
        raise UsageError(f"{target} is not a workflow file (<root>/<account>/<name>.yaml)")
    account = mine.where.account
    loaded = report.loaded

    def definitions(called: str) -> Any:
        found = loaded.get(f"{account}/{called}")
        return found.content if found is not None and found.ok else None

    return account, mine.where.name, mine.content, definitions


def _from_store(store: Store, key: str) -> tuple[str, str, dict[str, Any], Any]:
    account, _, name = key.partition("/")
    if not name:
        raise UsageError(f"expected ACCOUNT/NAME or a path to a workflow file, got {key!r}")

    def current(workflow: str) -> Any:
        with store.read() as conn:
            return views.current_definition(conn, f"{account}/{workflow}")

    definition = current(name)
    if definition is None:
        raise NotFoundError(f"no applied version of {key}; run `wfctl sync`, or dry-run the file by its path",
                            workflow=key)
    return account, name, definition, current


def directory_for(store: Store | None, account: str) -> Directory:
    """The account's real directory when it is loaded, otherwise made-up entries."""
    if store is not None:
        with store.read() as conn:
            if store_directory.has_directory(conn, account):
                return store_directory.StoreDirectory(store)
    return SyntheticDirectory()


def record_reader(store: Store | None) -> Any:
    if store is None:
        return None

    def read(account: str, entity: str, record_id: str) -> dict[str, Any] | None:
        try:
            with store.read() as conn:
                return record_store.get(conn, account, entity, record_id)
        except NotFoundError:
            return None

    return read


def _entity(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path}: the entity must be a JSON object")
    return value
