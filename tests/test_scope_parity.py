"""One scope builder: the live engine and `wfctl check` evaluate templates over the same names.

Every example workflow's trigger is fired through its live entry point (record writes, the inactivity
scan, mail delivery, the schedule jobs, runs on request) and dry-run through the check path (its first
test case); a recording Templates (our own seam) notes the scope of every evaluation — the trigger's
``when`` and each step. Both paths must show the same names, and the same ``workflow.*``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from enginekit import kit
from gitutil import commit_files, make_repo

from controller.check import cases
from controller.check.runner import run_case, synthetic_case
from controller.engine.dryrun import DryRunEffects, DryRunner, SyntheticDirectory
from controller.engine.records import RecordService
from controller.engine.runtime import Engine
from controller.engine.scheduler import Schedules
from controller.engine.starting import start_now
from controller.engine.templating import Templates
from controller.engine.triggers import email, inactivity
from controller.model import parse_duration
from controller.model.directory import parse_directory
from controller.reconcile.validate import validate_tree
from controller.store.directory import replace_account

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "workflows.d").glob("*/*.yaml") if not p.name.endswith(".tests.yaml"))

Signature = tuple[frozenset[str], frozenset[str], str]


class Recording(Templates):
    """Templates that note, per workflow, the names each scope offers."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, set[Signature]] = defaultdict(set)

    def render(self, value: Any, scope: Mapping[str, Any]) -> Any:
        workflow = scope.get("workflow") or {}
        if isinstance(workflow, Mapping) and "id" in workflow:
            self.seen[workflow["id"]].add((frozenset(scope), frozenset(workflow), str(workflow.get("name"))))
        return super().render(value, scope)


def first_case(path: Path) -> Any:
    tests = ROOT / cases.tests_path_for(str(path.relative_to(ROOT)))
    return cases.parse_tests(tests.read_text(), str(tests)).cases[0]


def check_path() -> dict[str, set[Signature]]:
    loaded = validate_tree(ROOT, "workflows.d").loaded
    templates = Recording()
    for path in EXAMPLES:
        account, name = path.parent.name, path.stem

        def definitions(called: str, account: str = account) -> Any:
            found = loaded.get(f"{account}/{called}")
            return found.content if found is not None else None

        runner = DryRunner(account=account, directory=SyntheticDirectory(), definitions=definitions,
                           now=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC), templates=templates)
        run_case(runner, name, loaded[f"{account}/{name}"].content, first_case(path))
    return templates.seen


def live_path(tmp_path: Path, store_url: str) -> tuple[dict[str, set[Signature]], set[str]]:
    templates = Recording()
    with kit(tmp_path, store_url) as k:
        engine = Engine(k.store, data_dir=k.data_dir, clock=k.clock, templates=templates,
                        effects=lambda engine, ex: DryRunEffects())  # our Effects seam: no network
        for account in ("acme", "globex"):
            path = ROOT / "deploy" / "directory" / f"{account}.yaml"
            with k.store.tx() as conn:
                replace_account(conn, account, parse_directory(path.read_text(), str(path)), k.clock.now())
        k.deploy({str(p.relative_to(ROOT)): p.read_text() for p in EXAMPLES}, "examples")
        records = RecordService(engine)
        fired: set[str] = set()
        longest_quiet = 0
        for path in EXAMPLES:
            key, definition = f"{path.parent.name}/{path.stem}", _definition(path)
            if definition.get("spec", {}).get("enabled", True) is False:
                continue  # a disabled workflow runs nowhere
            spec, case, account = definition["spec"]["trigger"], first_case(path), path.parent.name
            kind = spec["type"]
            fired.add(key)
            entity = dict(case.entity or {"title": "Example", "name": "Example"})
            entity.pop("id", None)
            if kind in ("record", "inactivity"):
                records.create(account, spec["entity"], entity)
                longest_quiet = max(longest_quiet, parse_duration(spec.get("after", "1s")))
            elif kind == "email":
                with k.store.tx() as conn:
                    email.deliver(engine, conn, account, spec["mailbox"], _mail(case.email or {}).as_bytes())
            elif kind == "webhook":
                start_now(engine, key, payload=case.payload or {})
            elif kind == "manual":
                made = records.create(account, spec["entities"][0], entity)
                start_now(engine, key, record=(spec["entities"][0], made["id"]))
        engine.run_until_idle()
        k.clock.advance(seconds=longest_quiet + 60)
        with k.store.tx() as conn:
            inactivity.scan(engine, conn)
        schedules = Schedules(engine)
        schedules.start(paused=True)
        try:
            k.clock.advance(days=8)  # every cron of the examples comes round in a week
            assert schedules.run_due(k.clock.now()) >= 2
        finally:
            schedules.shutdown()
        for _ in range(3):  # through waits of up to a day
            engine.run_until_idle()
            k.clock.advance(days=1)
    return templates.seen, fired


def _definition(path: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML

    return dict(YAML(typ="safe").load(path.read_text()))


def _mail(fields: Mapping[str, Any]) -> EmailMessage:
    message = EmailMessage()
    message["From"] = str(fields.get("from") or "someone@customer.test")
    message["To"] = "support@acme.test"
    message["Subject"] = str(fields.get("subject") or "Hello")
    message.set_content(str(fields.get("text") or "Hello"))
    return message


def test_live_engine_and_check_build_the_same_scope_for_every_example(tmp_path: Path) -> None:
    """For every example, each scope the live engine evaluates in has the names the check path's has."""
    live, fired = live_path(tmp_path, f"sqlite:///{tmp_path / 'store.db'}")
    checked = check_path()
    compared = sorted(key for key in fired if key in live)
    assert len(compared) >= 10, compared  # every enabled example ran on both paths
    for key in compared:
        assert live[key] == checked[key], key


def test_a_when_on_the_workflow_name_starts_in_both_paths(tmp_path: Path) -> None:
    """`when: "{{ workflow.name == 'x' }}"` starts the live workflow, and `wfctl check` says it would start."""
    text = ("apiVersion: workflows/v1\nkind: Workflow\nmetadata: {name: x}\nspec:\n  trigger: {type: record, "
            "entity: ticket, events: [created], when: \"{{ workflow.name == 'x' and account == 'acme' }}\"}\n"
            "  actions:\n    - {id: a, type: set, vars: {n: 1}}\n")
    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {"workflows.d/acme/x.yaml": text}, "add")
    with kit(tmp_path / "live", f"sqlite:///{tmp_path / 'store.db'}") as k:
        k.deploy({"workflows.d/acme/x.yaml": text})
        service = RecordService(k.engine)
        service.create("acme", "ticket", {"title": "t"})
        assert len(service.started) == 1
    report = validate_tree(repo, "workflows.d")
    runner = DryRunner(account="acme", directory=SyntheticDirectory(), definitions=lambda name: None,
                       now=lambda: datetime.now(UTC))
    definition = report.loaded["acme/x"].content
    case, record = synthetic_case(definition)
    result = run_case(runner, "x", definition, case, record=record, synthetic=True)
    assert result.started and result.ok, result.view()
