"""Offline validation of workflow files in a working tree (``wfctl validate``).

No store, no git history: the files as they are on disk, with the same loader and the same
cross-file rules the reconciler applies. Validating some files still reads the rest of their
account, so a call to a workflow that exists elsewhere in it resolves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import Problem, SourceError, UsageError
from controller.model.entries import DirectoryEntry
from controller.reconcile import pool
from controller.reconcile.loader import SUFFIXES, Loaded, WorkflowPath, classify
from controller.reconcile.rules import call_problems, outbound_problems, ref_problems
from controller.source.paths import safe_worktree_path


@dataclass(frozen=True)
class Report:
    files: int
    problems: tuple[Problem, ...]
    # Every workflow file read, the chosen ones and their account siblings: key -> loaded.
    loaded: dict[str, Loaded] = field(default_factory=dict)
    # Literal URLs the outbound guard refuses unless the configuration allows them (not known here).
    warnings: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_tree(top: Path, root: str, paths: Iterable[Path] = (),
                  directories: Mapping[str, Mapping[str, DirectoryEntry]] | None = None) -> Report:
    """Validate ``paths`` (files or folders; default: the whole root) of the working tree at ``top``.

    With ``directories`` (account -> ref -> entry), references of the accounts it holds are checked
    against them by the reconciler's own rule; without, references are not checked.
    """
    top = top.resolve()
    chosen = _chosen(top, root, list(paths))
    accounts: dict[str, dict[str, WorkflowPath]] = {}
    for where in chosen.values():
        accounts.setdefault(where.account, {})
    for account, members in accounts.items():
        folder = top / root / account
        if folder.is_dir():
            for file in sorted(folder.iterdir()):
                sibling = classify((Path(root) / account / file.name).as_posix(), root)
                if sibling is not None:
                    members.setdefault(sibling.name, sibling)
    for where in chosen.values():
        accounts[where.account].setdefault(where.name, where)
    problems: list[Problem] = []
    warnings: list[Problem] = []
    everything: dict[str, Loaded] = {}
    wanted = set(chosen)
    files = [(account, name, where) for account, members in sorted(accounts.items()) for name, where in members.items()]
    parsed = iter(_load_all(top, [where for _, _, where in files]))
    by_account: dict[str, dict[str, Loaded]] = {}
    for account, name, _ in files:
        by_account.setdefault(account, {})[f"{account}/{name}"] = next(parsed)
    for account, loaded in by_account.items():
        graph = {k.split("/", 1)[1]: v.calls for k, v in loaded.items()}
        cross = call_problems(account, graph, loaded)
        never, cautions = outbound_problems(loaded)
        for key, found in never.items():
            cross.setdefault(key, []).extend(found)
        if directories is not None and account in directories:
            for key, found in ref_problems(account, directories[account], loaded).items():
                cross.setdefault(key, []).extend(found)
        for key in sorted(loaded):
            if loaded[key].where.path in wanted:
                problems += list(loaded[key].problems) + cross.get(key, [])
                warnings += cautions.get(key, [])
        everything.update(loaded)
    return Report(len(chosen), tuple(problems), everything, tuple(warnings))


def _chosen(top: Path, root: str, paths: list[Path]) -> dict[str, WorkflowPath]:
    where_root = (top / root).resolve()
    if where_root != top and top not in where_root.parents:
        raise UsageError(f"--root {root} is outside the repository {top}; give a folder inside it (default "
                         f"workflows.d)")
    if not paths:
        paths = [top / root]
        if not paths[0].is_dir():
            raise UsageError(f"no {root}/ folder in {top}; pass --root or the files to validate")
    chosen: dict[str, WorkflowPath] = {}
    for given in paths:
        if not given.exists():
            raise UsageError(f"{given}: no such file or folder")
        if not given.is_dir() and given.suffix not in SUFFIXES:
            raise UsageError(f"{given} is not a workflow file (a .yaml or .yml file, or a folder of them)")
        files = sorted(p for p in given.rglob("*") if p.suffix in SUFFIXES) if given.is_dir() else [given]
        for file in files:
            where = _where(top, root, file)
            if where is not None:
                chosen[where.path] = where
    return chosen


def _where(top: Path, root: str, file: Path) -> WorkflowPath | None:
    try:
        relative = file.absolute().relative_to(top).as_posix()
    except ValueError:
        return _loose(file)
    return classify(relative, root) if relative.startswith(f"{root}/") else _loose(file)


def _loose(file: Path) -> WorkflowPath | None:
    """A file outside the root layout: its folder is the account, its stem the name."""
    name = file.name
    if name.endswith((".tests.yaml", ".tests.yml")) or file.suffix not in SUFFIXES:
        return None
    return WorkflowPath(path=str(file), account=file.absolute().parent.name, name=file.stem)


def _load_all(top: Path, wheres: list[WorkflowPath]) -> list[Loaded]:
    """Read every file here, parse them over every core when there are many (:mod:`controller.reconcile.pool`)."""
    read: list[bytes | Loaded] = []

    def readable() -> Iterator[tuple[WorkflowPath, bytes]]:  # read as the pool takes them: both at once
        for where in wheres:
            read.append(_read(top, where))
            if isinstance(read[-1], bytes):
                yield where, read[-1]

    parsed = iter(pool.load_all(readable(), expected=len(wheres)))
    return [next(parsed) if isinstance(data, bytes) else data for data in read]


def _read(top: Path, where: WorkflowPath) -> bytes | Loaded:
    """The file's bytes, or the file as invalid when it cannot be read."""
    path = Path(where.path)
    path = path if path.is_absolute() else top / path
    try:
        return safe_worktree_path(top, path).read_bytes() if path.is_relative_to(top) else path.read_bytes()
    except SourceError as e:  # (its message starts with the path, which the problem shows already)
        return Loaded(where, "", None, (Problem(where.path, 0, 0, str(e).removeprefix(f"{path}: ")),))
    except RuntimeError as e:  # pathlib's "Symlink loop from ..."
        return Loaded(where, "", None, (Problem(where.path, 0, 0, f"cannot read the file: {e}; fix the link"),))
    except OSError as e:
        return Loaded(where, "", None, (Problem(where.path, 0, 0, f"cannot read the file: {e.strerror}"),))
