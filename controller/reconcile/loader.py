"""Load one workflow file: bytes -> a validated definition, or located problems.

Pure: takes a path and the file's bytes (read from a git blob or the working tree by the caller),
returns a :class:`Loaded`. Parsing uses ruamel.yaml's C safe loader, behind the limits of
:mod:`controller.model.yamlfile`; only a file that failed is parsed again with the round-trip
loader, which keeps line and column, to place each problem at ``path:line:col`` (DESIGN.md,
"Performance notes").
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from controller.errors import DefinitionError, Problem
from controller.model import Workflow, field_path, validation_issues, yamlfile
from controller.model.paths import node_position

SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
SUFFIXES = (".yaml", ".yml")
TEST_SUFFIXES = (".tests.yaml", ".tests.yml")


@dataclass(frozen=True)
class WorkflowPath:
    """Where a workflow file sits: ``<root>/<account>/<name>.yaml``."""

    path: str
    account: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.account}/{self.name}"


def classify(path: str, root: str) -> WorkflowPath | None:
    """The workflow a repository path defines, or None for files that are not definitions.

    Only ``*.yaml``/``*.yml`` exactly one folder below the root count; ``*.tests.yaml`` files are
    workflow tests (dry-run issue), everything else is ignored.
    """
    parts = PurePosixPath(path).parts
    root_parts = PurePosixPath(root).parts if root not in ("", ".") else ()
    if len(parts) != len(root_parts) + 2 or tuple(parts[: len(root_parts)]) != root_parts:
        return None
    account, filename = parts[-2], parts[-1]
    if not filename.endswith(SUFFIXES) or filename.endswith(TEST_SUFFIXES) or filename.startswith("."):
        return None
    return WorkflowPath(path=path, account=account, name=PurePosixPath(filename).stem)


@dataclass(frozen=True)
class Loaded:
    """The outcome of loading one file: a definition (valid) or problems (invalid)."""

    where: WorkflowPath
    source_text: str
    workflow: Workflow | None = None
    problems: tuple[Problem, ...] = ()
    content: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    calls: tuple[str, ...] = ()  # the workflow.call targets, sorted: found where the file was parsed (a worker)

    @property
    def key(self) -> str:
        return self.where.key

    @property
    def ok(self) -> bool:
        """Valid: a definition without problems (its model may be left out: :func:`without_model`)."""
        return bool(self.content_hash) and not self.problems

    @property
    def enabled(self) -> bool:
        """``spec.enabled`` of a valid definition (read from its normalized content, which has every default)."""
        return bool(self.content["spec"]["enabled"])

    @property
    def trigger_type(self) -> str:
        """``spec.trigger.type`` of a valid definition."""
        return str(self.content["spec"]["trigger"]["type"])


def without_model(loaded: Loaded) -> Loaded:
    """``loaded`` without its :class:`Workflow` model, for a caller that plans from the content alone.

    The model is the parsed document a second time, as objects: in a cold sync of 10,000 files it is
    70 MB of the parent's memory and most of what a pool worker pickles and the parent unpickles.
    """
    return replace(loaded, workflow=None) if loaded.workflow is not None else loaded


def content_hash(content: dict[str, Any]) -> str:
    """A stable hash of a normalized definition: key order, comments and layout do not count."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# Young objects left by a bulk block beyond which they are promoted unscanned (see bulk_loading); a
# one-file pass leaves a few thousand, a cold sync of 10,000 files millions.
_PROMOTE_FROM = 100_000


@contextmanager
def bulk_loading() -> Iterator[None]:
    """No automatic cyclic collection while thousands of files load (in a cold sync: are planned, applied).

    What a bulk load makes survives it (the parsed definitions) or is freed by reference counting
    (each parse's short-lived trees), yet every collection rescans the survivors: with the default
    thresholds a quarter of a 10,000-file sync, and still ~1 s with rare young collections (the
    survivors then cross the generations, and one full collection walks them all). Whatever cycles
    there are wait for the collector until the block ends (nested blocks: the outermost).

    When the outermost block ends with a big young generation, its objects go to the oldest
    generation unscanned (``gc.freeze`` then ``gc.unfreeze``, two list splices): otherwise the first
    young collection after it walks them all, then the middle one, then (they count as newly old)
    a full collection, ~0.5 s after a cold sync, spent on what is mostly alive. They stay
    collectable: the next full collection, when CPython's own rule calls one, walks them (skipped
    when something else has frozen objects, which unfreezing would release).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if gc.get_count()[0] >= _PROMOTE_FROM and gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def load(where: WorkflowPath, data: bytes) -> Loaded:
    """Parse and validate one workflow file; never raises for a problem in the file itself.

    Not even for a file made to break the parser or what comes after it: the limits of
    :mod:`controller.model.yamlfile` (size, nesting, aliases) hold before the C parser sees the
    text, and :data:`MAX_ACTIONS` before the model is built. A recursion or memory error on the way
    fails this file only, with a message, never the pass that reads it.
    """
    try:
        text = yamlfile.decode(data, where.path)
    except DefinitionError as e:
        return _invalid(where, "", e.problems)
    try:
        return _load(where, text)
    except DefinitionError as e:  # a limit: the text is kept from the round-trip loader, which recurses
        return _invalid(where, "", e.problems)
    except (RecursionError, MemoryError) as e:
        return _invalid(where, "", [Problem(where.path, 1, 1, f"the file cannot be read: {type(e).__name__} "
                                            f"while parsing it (too deep or too large); simplify it")])


MAX_ACTIONS = 500  # actions in one workflow, nested ones included; real ones have a few dozen
_BRANCHES = ("then", "else")  # the keys of an ``if`` that hold actions


def _load(where: WorkflowPath, text: str) -> Loaded:
    try:
        raw = yamlfile.safe_load(text, where.path)
    except MarkedYAMLError as e:
        return _invalid(where, text, [yamlfile.syntax_problem(where.path, e)])
    except YAMLError as e:
        return _invalid(where, text, [Problem(where.path, 1, 1, f"YAML error: {e}")])
    problems = _check_placement(where, raw)
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}"
        return _invalid(where, text, [Problem(where.path, 1, 1, f"expected a Workflow mapping, the file is {kind}")])
    too_many = _too_many_actions(where.path, text, raw)
    if too_many is not None:
        return _invalid(where, text, [too_many])
    try:
        workflow = Workflow.model_validate(raw)
    except ValidationError as e:
        located = _locate(where.path, text, validation_issues(e))
        return _invalid(where, text, located + [_place(where.path, text, p) for p in problems])
    if problems:
        return _invalid(where, text, [_place(where.path, text, p) for p in problems])
    content = workflow.normalized()
    return Loaded(where, text, workflow, (), content, content_hash(content), tuple(sorted(workflow.calls())))


def _too_many_actions(path: str, text: str, raw: dict[str, Any]) -> Problem | None:
    """MAX_ACTIONS, counted before the model is built: a file of 30,000 actions is one error, not 30,000."""
    spec = raw.get("spec")
    actions = spec.get("actions") if isinstance(spec, dict) else None
    count, pending = 0, [actions]
    while pending and count <= MAX_ACTIONS:
        items = pending.pop()
        if isinstance(items, list):
            count += len(items)
            pending += [item.get(key) for item in items if isinstance(item, dict) for key in _BRANCHES]
    if count <= MAX_ACTIONS:
        return None
    line, col = yamlfile.key_position(text, ("spec", "actions"))  # (the round-trip loader takes 10 s on 1 MiB)
    return Problem(path, line, col, f"the workflow has more than {MAX_ACTIONS} actions (the limit, nested ones "
                                    f"included); split it into workflows that call each other (workflow.call)",
                   "spec.actions")


def _check_placement(where: WorkflowPath, raw: Any) -> list[Problem]:
    """File-name rules: the folder is a valid account, the stem equals metadata.name."""
    problems = []
    if not SLUG.fullmatch(where.account):
        problems.append(
            Problem(where.path, 0, 0, f"account folder {where.account!r} must be lowercase letters, digits and '-'")
        )
    name = raw.get("metadata", {}).get("name") if isinstance(raw, dict) and isinstance(raw.get("metadata"), dict) else None
    if isinstance(name, str) and name != where.name:
        problems.append(
            Problem(where.path, 0, 0, f"metadata.name {name!r} must equal the file name {where.name!r}; "
                    f"rename the file or the workflow", field="metadata.name")
        )
    return problems


def _place(path: str, text: str, problem: Problem) -> Problem:
    """Give a field-level problem its line and column."""
    if not problem.field:
        return problem
    loc = tuple(problem.field.split("."))
    line, col = position(text, loc)
    return Problem(path, line, col, problem.message, problem.field)


def locate(loaded: Loaded, loc: tuple[str | int, ...], message: str) -> Problem:
    """A problem at the node ``loc`` of a loaded file."""
    line, col = position(loaded.source_text, loc)
    return Problem(loaded.where.path, line, col, message, field_path(loc))


def _locate(path: str, text: str, issues: list[tuple[tuple[str | int, ...], str]]) -> list[Problem]:
    tree = yamlfile.round_trip(text)
    located = []
    for loc, message in issues:
        line, col = node_position(tree, loc)
        located.append(Problem(path, line, col, message, field_path(loc)))
    return located


def position(text: str, loc: tuple[str | int, ...]) -> tuple[int, int]:
    """1-based line and column of the key (or list item) at ``loc``, or of its deepest existing part."""
    return node_position(yamlfile.round_trip(text), loc)


def _invalid(where: WorkflowPath, text: str, problems: list[Problem]) -> Loaded:
    return Loaded(where, text, None, tuple(problems))
