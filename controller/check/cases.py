"""Workflow test files: ``workflows.d/<account>/<name>.tests.yaml``, a list of dry-run cases.

```yaml
cases:
  - name: an urgent ticket mails the lead
    entity: {id: "42", title: Printer on fire, priority: urgent, status: open}   # the record
    payload: {email: a@example.com}       # trigger.body (webhook, manual)
    email: {from: a@example.com, subject: Refund please, text: ...}             # inbound mail
    input: {ticket: "42"}                 # trigger.input (a called workflow)
    outputs: {spam-check: {status: 200, json: {score: 0.1}}}   # stand-ins for real answers
    expect:
      status: succeeded                   # succeeded | failed | not_started (the trigger's when)
      ran: [mail-lead]                    # these actions ran
      skipped: [page-oncall]              # these did not
      branches: {still-open: then}
      effects:                            # fields of an intended side effect, by action id
        mail-lead: {subject: "Urgent: Printer on fire", to: {matches: "@acme\\.test$"}}
      output: {escalated: true}           # vars at the end (these keys)
      error: {matches: "placeholder"}
```

An expected value is compared for equality, or ``{matches: REGEX}`` searches its text; a single
value expected of a list passes when the list holds it. Action ids may name actions of called
workflows too; where a called workflow has an action of the same id, ``branches`` and ``effects``
mean the workflow's own one. An id that exists nowhere fails the case (a typo never passes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from controller.errors import DefinitionError, Problem, SourceError
from controller.model import field_path, validation_issues, yamlfile
from controller.reconcile.loader import position
from controller.source.paths import safe_worktree_path

TEST_SUFFIX = ".tests.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Expect(_Strict):
    status: Literal["succeeded", "failed", "not_started"] | None = None
    ran: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
    branches: dict[str, Literal["then", "else"]] = Field(default_factory=dict)
    effects: dict[str, dict[str, Any]] = Field(default_factory=dict)
    output: dict[str, Any] = Field(default_factory=dict)
    error: Any = None


class Case(_Strict):
    name: str = Field(min_length=1)
    entity: dict[str, Any] | None = None
    payload: Any = None
    email: dict[str, Any] | None = None
    input: dict[str, Any] | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    expect: Expect = Field(default_factory=Expect)


class TestFile(_Strict):
    cases: list[Case] = Field(min_length=1)

    @field_validator("cases")
    @classmethod
    def _unique_names(cls, cases: list[Case]) -> list[Case]:
        seen: set[str] = set()
        for case in cases:
            if case.name in seen:
                raise ValueError(f"two cases are named {case.name!r}; names must be unique")
            seen.add(case.name)
        return cases


def tests_path_for(workflow_path: str) -> str:
    """``workflows.d/acme/foo.yaml`` -> ``workflows.d/acme/foo.tests.yaml``."""
    stem = workflow_path.rsplit(".", 1)[0]
    return f"{stem}{TEST_SUFFIX}"


def parse_tests(text: str, path: str) -> TestFile:
    """Parse a test file; DefinitionError with ``path:line:col`` for every problem (limits included)."""
    raw = yamlfile.parse(text, path, max_bytes=yamlfile.MAX_FILE_BYTES)
    try:
        return TestFile.model_validate(raw)
    except ValidationError as e:
        problems = []
        for loc, message in validation_issues(e):
            line, col = position(text, loc)
            problems.append(Problem(path, line, col, message, field_path(loc)))
        raise DefinitionError(problems) from None


def read_tests(top: Path, file: Path, shown: str) -> str:
    """The text of a test file of the checkout at ``top``, shown as ``shown`` in problems.

    DefinitionError when it cannot be read, leaves the repository through a symlink, or breaks a
    limit of :func:`controller.model.yamlfile.decode`: it is never read from outside the repository.
    """
    try:
        return yamlfile.decode(safe_worktree_path(top, file).read_bytes(), shown)
    except SourceError as e:  # (its message starts with the path, which the problem shows already)
        raise DefinitionError([Problem(shown, 0, 0, str(e).removeprefix(f"{file}: "))]) from None
    except (OSError, RuntimeError) as e:  # RuntimeError: pathlib's "Symlink loop from ..."
        raise DefinitionError([Problem(shown, 0, 0, f"cannot read the file: {getattr(e, 'strerror', None) or e}")]) from None


@dataclass(frozen=True)
class Mismatch:
    what: str  # e.g. "effects.mail-lead.subject"
    expected: Any
    actual: Any

    def __str__(self) -> str:
        return f"{self.what}: expected {self.expected!r}, got {self.actual!r}"


def matches(expected: Any, actual: Any) -> bool:
    """Equality, ``{matches: REGEX}``, or membership of a single value in a list."""
    if isinstance(expected, dict) and set(expected) == {"matches"}:
        pattern = re.compile(str(expected["matches"]))
        values = actual if isinstance(actual, list) else [actual]
        return any(pattern.search("" if v is None else str(v)) for v in values)
    if isinstance(actual, list) and not isinstance(expected, list):
        return expected in actual
    return bool(expected == actual)


def test_files(top: Path, root: str, paths: Iterable[Path] = ()) -> list[Path]:
    """The ``*.tests.yaml`` files among ``paths`` (files or folders; default: the whole root)."""
    found: list[Path] = []
    for given in list(paths) or [top / root]:
        if given.is_dir():
            found += sorted(given.rglob(f"*{TEST_SUFFIX}"))
        elif given.name.endswith(TEST_SUFFIX):
            found.append(given)
    return found


def check_test_files(top: Path, files: Iterable[Path]) -> list[Problem]:
    """Problems in test files (``wfctl validate`` reports them with the workflows')."""
    problems: list[Problem] = []
    for file in files:
        shown = file.absolute().relative_to(top.absolute()).as_posix() if file.absolute().is_relative_to(
            top.absolute()) else str(file)
        try:
            parse_tests(read_tests(top, file, shown), shown)
        except DefinitionError as e:
            problems += e.problems
    return problems
