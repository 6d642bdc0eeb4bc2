"""The example repository in ``workflows.d/``: every file is a valid workflow and together they show it all."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from controller.model import (
    ACTION_TYPES,
    TRIGGER_TYPES,
    HttpRequestAction,
    Workflow,
    field_path,
    load_workflow,
    validation_issues,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "workflows.d").glob("*/*.yaml") if not p.name.endswith(".tests.yaml"))
SCHEMA_COMMENT = "# yaml-language-server: $schema=../../schemas/workflow.v1.schema.json"


def _load(path: Path) -> Workflow:
    data = YAML(typ="safe", pure=False).load(path.read_text(encoding="utf-8"))
    try:
        return load_workflow(data)
    except ValidationError as error:
        problems = "; ".join(f"{field_path(loc)}: {message}" for loc, message in validation_issues(error))
        raise AssertionError(f"{path.relative_to(ROOT)}: {problems}") from None


@pytest.fixture(scope="module")
def workflows() -> dict[Path, Workflow]:
    """Every example, validated once."""
    return {path: _load(path) for path in EXAMPLES}


def test_there_are_examples_in_two_accounts() -> None:
    """The example repository holds at least eight workflows in at least two accounts."""
    assert len(EXAMPLES) >= 8
    assert len({path.parent.name for path in EXAMPLES}) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_example_is_valid_and_named_after_its_file(path: Path) -> None:
    """Each file parses with the C loader, validates, is named by its stem and points editors at the schema."""
    workflow = _load(path)
    assert workflow.metadata.name == path.stem
    assert path.read_text(encoding="utf-8").splitlines()[0] == SCHEMA_COMMENT


def test_examples_cover_every_trigger_and_action(workflows: dict[Path, Workflow]) -> None:
    """Together the examples use all six trigger types and all nine action kinds."""
    triggers = {workflow.spec.trigger.type for workflow in workflows.values()}
    actions = {action.type for workflow in workflows.values() for action in workflow.iter_actions()}
    assert triggers == set(TRIGGER_TYPES)
    assert actions == set(ACTION_TYPES)


def test_every_call_target_exists_in_the_same_account(workflows: dict[Path, Workflow]) -> None:
    """Every workflow.call names a workflow of the same account, and some sub-workflow has two callers."""
    names = defaultdict(set)
    for path in workflows:
        names[path.parent.name].add(path.stem)
    callers: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path, workflow in workflows.items():
        for target in workflow.calls():
            assert target in names[path.parent.name], f"{path.name} calls {target}, not in {path.parent.name}"
            callers[(path.parent.name, target)].add(workflow.name)
    assert any(len(who) >= 2 for who in callers.values())


def test_example_urls_use_reserved_hosts(workflows: dict[Path, Workflow]) -> None:
    """Example URLs point only at .test hosts or example.com, never at a real service."""
    for path, workflow in workflows.items():
        for action in workflow.iter_actions():
            if isinstance(action, HttpRequestAction):
                host = urlsplit(action.url).hostname or ""
                assert re.search(r"(\.test|(^|\.)example\.com)$", host), f"{path.name}: {action.url}"


def test_examples_validate_against_the_checked_in_schema(workflows: dict[Path, Workflow]) -> None:
    """The JSON schema that editors use accepts every example as written."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "schemas" / "workflow.v1.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    for path in workflows:
        data = YAML(typ="safe", pure=False).load(path.read_text(encoding="utf-8"))
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]
        assert not errors, f"{path.name}: {errors}"
