"""Mail headers from parsed values, never pasted text: the one place addresses and header text are checked.

``email.send`` (:mod:`controller.engine.actions.email_send`) and the alert e-mails
(:mod:`controller.safeguards.delivery`) build their headers from what these functions return:
:class:`email.headerregistry.Address` objects (the message renders them) and one-line text.

- A string is **one** address: ``a@x.test`` or ``Alice <a@x.test>``. ``"a@x.test, b@y.test"`` is not
  two recipients but one invalid address; several recipients are a list.
- CR or LF inside any header value (an address, a display name, a subject) is refused: it is how
  ``"x@a.test\\r\\nBcc: evil@evil.test"`` would add a header. Whitespace around a value (a YAML block
  scalar's last newline) is dropped first; it can hold nothing after it.
"""

from __future__ import annotations

import re
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from typing import Any

from controller.errors import ExecutionError

# An address as the model accepts it: local@domain.tld, nothing that quotes, comments or groups.
ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+\.[^@\s<>(),;:\"\[\]]+$")
# The same without the dot: a host's own name (the default alert sender, wfctl@localhost).
HOST_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+$")
_SHOWN = 120


def header_text(value: Any, field: str) -> str:
    """``value`` as the text of one header line; a line break inside it fails the step, naming ``field``."""
    text = ("" if value is None else str(value)).strip()
    if "\r" in text or "\n" in text:
        raise ExecutionError(f"{field}: {_shown(text)} contains a line break, which a mail header cannot hold; "
                             f"remove it from the value (e.g. with | replace('\\n', ' '))")
    return text


def address(value: Any, field: str, pattern: re.Pattern[str] = ADDRESS) -> Address:
    """The one address ``value`` holds (``a@x.test`` or ``Name <a@x.test>``); else a step error naming ``field``."""
    text = header_text(value, field)
    found = _parse(text, pattern)
    if found is None:
        raise ExecutionError(f"{field}: {_shown(text)} is not an e-mail address (give exactly one: name@domain, "
                             f"\"Name <name@domain>\" or user:<id>; several recipients are a list)")
    return found


def parsed(text: str, pattern: re.Pattern[str] = ADDRESS) -> Address | None:
    """The one address ``text`` holds, or None: for a line break, a second address, a group or a bad address.

    The model checks a recipient written in a definition with it; :func:`address` at run time.
    """
    text = text.strip()
    if "\r" in text or "\n" in text:
        return None
    return _parse(text, pattern)


def named(display_name: Any, addr_spec: Any, field: str) -> Address:
    """An address from a name and an address kept apart (a directory entry); both checked like :func:`address`."""
    name, spec = header_text(display_name, field), header_text(addr_spec, field)
    if not ADDRESS.match(spec):
        raise ExecutionError(f"{field}: {_shown(spec)} is not an e-mail address (use name@domain)")
    try:
        return Address(display_name=name, addr_spec=spec)
    except (ValueError, IndexError, HeaderParseError) as error:
        raise ExecutionError(f"{field}: {_shown(spec)} is not an e-mail address ({error})") from None


def _parse(text: str, pattern: re.Pattern[str]) -> Address | None:
    try:
        header = policy.default.header_factory("to", text)
    except (ValueError, IndexError, HeaderParseError):  # the parser's own errors on broken input
        return None
    found = [a for group in header.groups for a in group.addresses]
    if header.defects or len(header.groups) != 1 or header.groups[0].display_name is not None or len(found) != 1:
        return None
    if not pattern.match(found[0].addr_spec):
        return None
    return found[0]


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "\u2026")
