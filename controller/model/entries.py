"""What an account reference names: an entry of the account directory, and the statuses it can have.

The directory (users, mailboxes, channels, object types) is pushed by the host application; the
reconciler checks references against it, the engine looks entries up when a step runs, and the
store keeps them. All three share this one value type and the one list of kinds in
:data:`~controller.model.refs.REF_KINDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.model.refs import REF_KINDS

KINDS = REF_KINDS
ENTRY_STATUSES = ("active", "deactivated", "deleted", "disconnected")


@dataclass(frozen=True)
class DirectoryEntry:
    kind: str  # one of KINDS
    id: str  # the part after "<kind>:"
    name: str = ""
    status: str = "active"  # one of ENTRY_STATUSES
    data: dict[str, Any] = field(default_factory=dict)  # email, permissions, address, smtp, webhook_url, ...

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def active(self) -> bool:
        return self.status == "active"
