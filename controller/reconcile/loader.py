"""Load one workflow file: bytes -> a validated definition, or located problems.

Pure: takes a path and the file's bytes (read from a git blob or the working tree by the caller),
returns a :class:`Loaded`. Parsing uses ruamel.yaml's C safe loader; only a file that failed is
parsed again with the round-trip loader, which keeps line and column, to place each problem at
``path:line:col`` (DESIGN.md, "Performance notes").
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from controller.errors import Problem
from controller.model import Workflow, field_path, validation_issues
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

    @property
    def key(self) -> str:
        return self.where.key

    @property
    def ok(self) -> bool:
        return self.workflow is not None and not self.problems


def content_hash(content: dict[str, Any]) -> str:
    """A stable hash of a normalized definition: key order, comments and layout do not count."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


_fast_yaml = YAML(typ="safe", pure=False)


@contextmanager
def bulk_loading() -> Iterator[None]:
    """Collect garbage less often while thousands of files load.

    Each parse leaves short-lived trees behind; with the default thresholds the cyclic collector
    rescans the survivors again and again (about a quarter of a 10,000-file sync). Rarer young
    collections keep that cost small and still free what cycles there are.
    """
    before = gc.get_threshold()
    gc.set_threshold(50_000, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def load(where: WorkflowPath, data: bytes) -> Loaded:
    """Parse and validate one workflow file; never raises for a problem in the file itself.

    Not even for a file made to break the parser: one nested beyond :data:`MAX_NESTING` is refused
    before parsing (the C parser would overflow the stack), and a recursion or memory error on the
    way fails this file only, with a message, never the pass that reads it.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return _invalid(where, "", [Problem(where.path, 0, 0, f"file is not UTF-8 text ({e.reason} at byte {e.start})")])
    too_deep = _too_deep(text)
    if too_deep is not None:
        return _invalid(where, "", [Problem(where.path, too_deep, 1, f"the file nests deeper than {MAX_NESTING} "
                                            f"levels; a workflow needs a handful: flatten it")])
    try:
        return _load(where, text)
    except (RecursionError, MemoryError) as e:
        return _invalid(where, "", [Problem(where.path, 0, 0, f"the file cannot be read: {type(e).__name__} "
                                            f"while parsing it (too deep or too large); simplify it")])


MAX_NESTING = 100  # levels of [ { (or 10 columns of indentation each); a workflow needs a handful
_DEEP_INDENT = re.compile(rf"^[ \t]{{{MAX_NESTING * 10},}}\S", re.MULTILINE)


def _too_deep(text: str) -> int | None:
    """The line where ``text`` nests deeper than MAX_NESTING (flow brackets, or indentation), else None."""
    indented = _DEEP_INDENT.search(text)
    if indented is not None:
        return text.count("\n", 0, indented.start()) + 1
    if text.count("[") + text.count("{") <= MAX_NESTING:  # the common case: nothing to scan
        return None
    depth, quote, line = 0, "", 1
    for char in text:
        if char == "\n":
            line += 1
        elif quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return line
        elif char in "]}":
            depth = max(0, depth - 1)
    return None


def _load(where: WorkflowPath, text: str) -> Loaded:
    try:
        raw = _fast_yaml.load(text)
    except MarkedYAMLError as e:
        return _invalid(where, text, [_yaml_problem(where.path, e)])
    except YAMLError as e:
        return _invalid(where, text, [Problem(where.path, 1, 1, f"YAML error: {e}")])
    problems = _check_placement(where, raw)
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}"
        return _invalid(where, text, [Problem(where.path, 1, 1, f"expected a Workflow mapping, the file is {kind}")])
    try:
        workflow = Workflow.model_validate(raw)
    except ValidationError as e:
        located = _locate(where.path, text, validation_issues(e))
        return _invalid(where, text, located + problems)
    if problems:
        return _invalid(where, text, [_place(where.path, text, p) for p in problems])
    content = workflow.normalized()
    return Loaded(where, text, workflow, (), content, content_hash(content))


def _check_placement(where: WorkflowPath, raw: Any) -> list[Problem]:
    """File-name rules: the folder is a valid account, the stem equals metadata.name."""
    problems = []
    if not SLUG.match(where.account):
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
    tree = YAML().load(text)
    located = []
    for loc, message in issues:
        line, col = node_position(tree, loc)
        located.append(Problem(path, line, col, message, field_path(loc)))
    return located


def position(text: str, loc: tuple[str | int, ...]) -> tuple[int, int]:
    """1-based line and column of the key (or list item) at ``loc``, or of its deepest existing part."""
    return node_position(YAML().load(text), loc)  # the round-trip loader keeps .lc positions


def _yaml_problem(path: str, error: MarkedYAMLError) -> Problem:
    mark = error.problem_mark or error.context_mark
    what = error.problem or "YAML syntax error"
    if error.context and error.context not in what:
        what = f"{what} ({error.context})"
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return Problem(path, line, col, f"YAML syntax error: {what}")


def _invalid(where: WorkflowPath, text: str, problems: list[Problem]) -> Loaded:
    return Loaded(where, text, None, tuple(problems))
