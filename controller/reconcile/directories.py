"""Account directories from files, for checks without a store: `wfctl validate|check --directory DIR`.

``DIR`` holds one ``<account>.yaml`` (or ``.json``) per account, in the format of `wfctl directory
load`. The entries come out in the shape of the store's snapshot (account -> ref -> entry), so the
offline checks apply exactly the reference rule the reconciler applies
(:func:`controller.reconcile.rules.ref_problems`).
"""

from __future__ import annotations

from pathlib import Path

from controller.errors import UsageError
from controller.model import yamlfile
from controller.model.directory import parse_directory
from controller.model.entries import DirectoryEntry

Directories = dict[str, dict[str, DirectoryEntry]]

NOT_CHECKED = ("references to the account directory (mailboxes, users, channels, object types) were not checked: "
               "pass --directory DIR (one <account>.yaml each, e.g. deploy/directory) to check them as the "
               "controller does")


def load_directories(folder: Path) -> Directories:
    """Every ``<account>.yaml|yml|json`` in ``folder``; DefinitionError (located) for a bad file."""
    if not folder.is_dir():
        raise UsageError(f"--directory {folder}: no such folder (one <account>.yaml per account)")
    found: Directories = {}
    for file in sorted(folder.iterdir()):
        if file.suffix in (".yaml", ".yml", ".json") and file.is_file():
            text = yamlfile.decode(file.read_bytes(), str(file), max_bytes=yamlfile.MAX_DATA_FILE_BYTES)
            entries = parse_directory(text, str(file))
            found[file.stem] = {entry.ref: entry for entry in entries}
    if not found:
        raise UsageError(f"--directory {folder} holds no <account>.yaml file")
    return found


class FileDirectory:
    """The :class:`~controller.engine.directory.Directory` protocol over loaded files (for dry runs)."""

    def __init__(self, directories: Directories) -> None:
        self._directories = directories

    def get(self, account: str, ref: str) -> DirectoryEntry | None:
        return self._directories.get(account, {}).get(ref)
