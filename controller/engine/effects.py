"""The one door through which executions touch the world.

Actions never send mail, call HTTP or write records themselves: they build the request and hand
it to an :class:`Effects`. :class:`~controller.engine.live.LiveEffects` acts; the dry run's effects
record the intent and return a synthetic output of the same shape. Every method returns the
step's output (a JSON-ready dict).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

from controller.model.entries import DirectoryEntry


@dataclass(frozen=True)
class HttpCall:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    body: str | None = None
    timeout: float = 30.0
    expect_status: tuple[int, ...] = ()


class Effects(Protocol):
    def send_email(self, account: str, mailbox: DirectoryEntry, message: EmailMessage) -> dict[str, Any]:
        """Send ``message`` through ``mailbox``; output ``{"message_id", "from", "to", "subject"}``."""
        ...

    def post_channel(self, account: str, channel: DirectoryEntry, payload: dict[str, Any],
                     headers: dict[str, str] | None = None) -> dict[str, Any]:
        """POST ``payload`` (with ``headers``: the idempotency key) to the channel's webhook; output ``{"status"}``."""
        ...

    def http_request(self, call: HttpCall) -> dict[str, Any]:
        """Make the call; output ``{"status", "headers", "json"?, "text"?}``."""
        ...

    def create_record(self, account: str, entity: str, data: dict[str, Any]) -> dict[str, Any]:
        """Create a record; output the record (``{"id", "type", ...fields}``)."""
        ...

    def update_record(self, account: str, entity: str, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """Merge ``data`` into the record; output the updated record."""
        ...
