"""What an account reference names: an entry of the account directory, and the statuses it can have.

The directory (users, mailboxes, channels, object types) is pushed by the host application; the
reconciler checks references against it, the engine looks entries up when a step runs, and the
store keeps them. All three share this one value type and the one list of kinds in
:data:`~controller.model.refs.REF_KINDS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator

from controller.model.refs import REF_KINDS


def _check_email(value: str) -> str:
    local, _, domain = value.partition("@")
    if value.count("@") != 1 or not local or not domain or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an e-mail address (use name@domain, no spaces)")
    return value


Email = Annotated[str, AfterValidator(_check_email)]
"""An e-mail address (a directory user's, a workflow's owner)."""

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


def check_refs(
    refs: Iterable[tuple[str, str, str]], entries: Mapping[str, DirectoryEntry], account: str
) -> list[tuple[str, str]]:
    """``(field_path, message)`` for every reference that is missing from ``entries`` or not active.

    ``refs`` are ``(field_path, kind, id)`` as :func:`controller.model.iter_refs` returns them;
    ``entries`` is one account's directory by ref (a value of :func:`snapshot`). References holding
    a template (``{{``) are resolved at run time and skipped here.
    """
    problems = []
    for path, kind, ref_id in refs:
        if "{{" in ref_id:
            continue
        ref = f"{kind}:{ref_id}"
        entry = entries.get(ref)
        if entry is None:
            problems.append((path, missing_message(ref, account)))
        elif not entry.active:
            problems.append((path, _inactive(ref, entry.status, account)))
    return problems


def missing_message(ref: str, account: str) -> str:
    return (f"{ref} is not in the directory of account {account!r}; add it to the directory file and "
            f"run `wfctl directory load FILE --account {account}`, or fix the reference")


def _inactive(ref: str, status: str, account: str) -> str:
    return (f"{ref} is {status} (status: {status}); make it active in the directory of account {account!r} "
            f"(`wfctl directory set-status`, or load a directory file) or change the reference")
