"""The I/O edges of export and import: the checkout's existing workflows, writing the plan, one commit.

Where it sits: the CLI finds the target account's folder (:func:`account_folder`), reads its
workflows from the checkout (:func:`existing`), plans with :func:`controller.portable.document.plan`,
then writes the planned files under ``<root>/<account>/`` (:func:`write`) and, with ``--commit``,
commits exactly them. The account and every file name are checked before they touch a path: a
document (or a ``--rename``) naming ``../x`` cannot write outside the account's folder, and a
folder that is a symlink out of the repository is neither read nor written.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from controller.errors import SourceError, UsageError
from controller.model import yamlfile
from controller.model.names import is_name
from controller.portable.document import Plan
from controller.reconcile.loader import SLUG
from controller.reconcile.rules import call_sites
from controller.source.paths import normalize_root, safe_worktree_path


def account_folder(checkout: Path, root: str, account: str) -> Path:
    """``<checkout>/<root>/<account>``, once the account is a valid name and the folder is in the repository."""
    if not SLUG.fullmatch(account):
        raise UsageError(f"--account {account!r} is not an account name (lowercase letters, digits and '-', at "
                         f"most 63, as its folder under {root or 'the repository'} is named)")
    folder = checkout / normalize_root(root) / account
    safe_worktree_path(checkout, folder)  # SourceError for a folder that is a symlink out of the repository
    return folder


def existing(folder: Path) -> dict[str, list[str]]:
    """The workflows in ``folder`` (an account's folder of the checkout): name -> the names they call.

    A file that does not parse still takes its name (it would clash); it calls nothing.
    """
    found: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        if path.name.endswith(".tests.yaml"):
            continue
        try:  # (only files of the account's own folder: a symlink is not followed anywhere)
            data = path.read_bytes() if not path.is_symlink() else b""
            content = yamlfile.parse(yamlfile.decode(data, str(path)), str(path), max_bytes=yamlfile.MAX_FILE_BYTES)
        except Exception:  # noqa: BLE001 - an invalid file is the reconciler's to report; here it only has a name
            content = None
        found[path.stem] = [t for _, t in call_sites(content)] if isinstance(content, dict) else []
    return found


def render(content: Mapping[str, Any], header: str) -> str:
    """A definition as a workflow file, with ``header`` as its opening comment."""
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(_plain(content), out)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + out.getvalue()


def write(plan: Plan, folder: Path, *, source: str, now: datetime) -> list[Path]:
    """Write the plan's files into ``folder``; the paths written. UsageError, with nothing written, for a
    file name that is not ``<workflow name>.yaml``."""
    for name in plan.files:
        stem = name.removesuffix(".yaml")
        if not (name.endswith(".yaml") and is_name(stem)):
            raise UsageError(f"{stem!r} is not a workflow name (lowercase letters, digits and '-', at most 63); "
                             f"import it under another with --rename {stem}=NEW; nothing was written")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in sorted(plan.files.items()):
        header = (f"Imported from {source} (a wfctl export) on {now.date().isoformat()}.\n"
                  f"Disabled until reviewed: set spec.enabled: true to run it.")
        path = folder / name
        path.write_text(render(content, header), encoding="utf-8")
        written.append(path)
    return written


def commit(checkout: Path, paths: list[Path], message: str) -> str:
    """Commit exactly ``paths`` in the repository at ``checkout``; the new commit's sha."""
    from git import InvalidGitRepositoryError, NoSuchPathError, Repo

    try:
        repo = Repo(checkout, search_parent_directories=True)
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise SourceError(f"{checkout} is not in a git checkout; run the import in the workflow repository, or "
                          f"leave out --commit") from None
    top = Path(str(repo.working_tree_dir))
    repo.index.add([str(p.resolve().relative_to(top.resolve())) for p in paths])
    return repo.index.commit(message).hexsha


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
