"""What the engine needs of the account directory: look a reference up (``mailbox:mb_support``).

The directory itself (users, mailboxes, channels, object types, their status) is pushed by the
host application and kept in the store (``controller.store.directory``); this is the read side
every action sees. The entries are :class:`~controller.model.entries.DirectoryEntry` values.
"""

from __future__ import annotations

from typing import Protocol

from controller.model.entries import DirectoryEntry


class Directory(Protocol):
    def get(self, account: str, ref: str) -> DirectoryEntry | None:
        """The entry a reference like ``mailbox:mb_support`` names in ``account``, or None."""
        ...
