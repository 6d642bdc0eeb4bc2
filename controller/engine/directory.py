"""What the engine needs of the account directory: look a reference up (``mailbox:mb_support``).

The directory itself (users, mailboxes, channels, object types, their status) is pushed by the
host application and kept in the store (``controller.store.directory``); this is the read side
every action and the reconciler's reference check see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

KINDS = ("user", "mailbox", "channel", "object_type")
STATUSES = ("active", "deactivated", "deleted", "disconnected")


@dataclass(frozen=True)
class DirectoryEntry:
    kind: str  # user | mailbox | channel | object_type
    id: str  # the part after "<kind>:"
    name: str = ""
    status: str = "active"
    data: dict[str, Any] = field(default_factory=dict)  # email, permissions, address, smtp, webhook_url, ...

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def active(self) -> bool:
        return self.status == "active"


class Directory(Protocol):
    def get(self, account: str, ref: str) -> DirectoryEntry | None:
        """The entry a reference like ``mailbox:mb_support`` names in ``account``, or None."""
        ...
